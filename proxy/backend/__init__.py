"""Talking to the Redis nodes: pipelined backend connections, pools, probes, health.

May import the low proxy modules (errors, stats, logs), routing, resp and config; never
server, admin or observe. Waiters are known only as the `Waiter` protocol.
"""
