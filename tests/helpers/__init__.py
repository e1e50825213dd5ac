"""Shared test helpers (topologies, the proxy in a thread, relays, raw clients, load
processes, GeoIP databases); no tests here."""
