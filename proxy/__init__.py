"""georedis, the server: a RESP proxy that routes reads by the client's location.

One folder per role (docs/architecture.md, "Layout" and "Layers"): `server/` serves
clients, `admin/` answers PROXY verbs, `observe/` exports what the proxy knows,
`backend/` talks to the Redis nodes, `resp/` is the codec, `tools/` the side commands.
`errors`, `stats` and `logs` sit low so every room may use them; `cli`, `startup` and
`workers` are the entry points at the top.
"""
