"""georedis configuration: the typed model, its TOML loader and `check-config`.

A bottom layer: config imports nothing from proxy/ or routing/ (both import it). The
model (`config.model`) is the one place fields and defaults are written; `config.spec`
derives the loader's tables from it. `config.errors` holds `GeoredisError`, the root
of every error georedis raises.
"""
