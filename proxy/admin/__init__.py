"""`PROXY <verb>` admin commands: one handler per verb in one table (`verbs.py`).

Below proxy/server, which dispatches to it; it sees the app and the caller only through
`host.py`'s protocols. May import observe, backend and everything lower. Failover and
backup orchestration land here.
"""
