"""Backup and restore over the network (docs/architecture.md, "Backup and restore").

A snapshot is fetched from a replica over the replication protocol (`fetch`), checked as
it streams (`rdb`: the walk over keys and the CRC64 trailer), sealed with AES-256-GCM in
authenticated segments (`sealed`), and written to a target (`targets`: a directory, or
S3 in `s3`) beside a manifest (`manifest`). A restore checks all of it first, then serves
the RDB to the target as a replication master would (`serve`). `job` runs one backup,
`schedule` and `retention` decide when to run and what to keep.

Below proxy/admin (the verbs drive it), above proxy/observe and proxy/backend: it uses
backend connections' credentials and TLS, never the hot path.
"""
