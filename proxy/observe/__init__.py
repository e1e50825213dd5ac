"""What the proxy shows of itself: Prometheus metrics (declared once), the HTTP server,
the status page and JSON, PROXY INFO's text, the slow log.

Reads the proxy through `proxy.stats.StatusSource`; may import backend, the low proxy
modules, routing and config, never server or admin.
"""
