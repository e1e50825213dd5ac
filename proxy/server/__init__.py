"""Serving clients: the app (one process), sessions (one per client) and their
attachments (forwarding, transaction, blocking, subscription, scripts).

May import everything below it (admin, observe, backend, the low proxy modules, routing,
resp, config); nothing above it imports it except the entry points. Inside, the session
sees the app, and attachments their session, only through the protocols in `host.py`.
"""
