"""The client location source kept current: `GeoWatch` re-opens the GeoIP database when
its file is replaced (geoipupdate renames a new file over the old, twice a week), and
`set_geo` puts a resolver in force with every connected client located again by it
(also what a config reload does: a region may be new, or gone).

docs/architecture.md, "Reload".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Protocol

from config.model import Config
from proxy.logs import log_event
from proxy.server.client import ClientState
from routing.geo import SOURCE_OVERRIDE, GeoResolver

log = logging.getLogger("georedis.reload")

# How often GeoWatch looks at the database file.
GEOIP_CHECK_S = 5.0


class Located(Protocol):
    @property
    def state(self) -> ClientState: ...


class GeoHost(Protocol):
    """What changes when the resolver does (`proxy.server.app.App`)."""

    config: Config
    geo: GeoResolver
    default_ranking: tuple[str, ...]

    @property
    def sessions(self) -> Mapping[int, Located]: ...


def set_geo(app: GeoHost, geo: GeoResolver) -> None:
    """`geo` in force: every client located again by it (a region may be new, or gone)."""
    app.geo = geo
    app.default_ranking = geo.locate("").ranking
    for s in list(app.sessions.values()):
        relocate(s.state, geo)


def relocate(st: ClientState, geo: GeoResolver) -> None:
    loc = st.location
    if loc is None:
        st.ranking = geo.locate("").ranking
        return
    if loc.source == SOURCE_OVERRIDE and loc.ranking:
        with contextlib.suppress(KeyError):  # its region is gone: located as others are
            st.set_location(geo.override(loc.ranking[0], loc.address))
            return
    st.set_location(geo.locate(loc.address))


class GeoWatch:
    """Re-opens the GeoIP database when its file is replaced (a new inode, size or mtime)."""

    def __init__(self, app: GeoHost) -> None:
        self.app = app
        self._seen: tuple[str, tuple[int, int, int]] | None = None
        self.check()  # the file open now is the one to compare with

    async def run(self) -> None:
        while True:
            await asyncio.sleep(GEOIP_CHECK_S)
            self.check()

    def check(self) -> None:
        path = self.app.config.geoip.database
        if not path:
            self._seen = None
            return
        sig = _signature(path)
        if sig is None:
            return  # mid-replacement, or removed: keep the open one
        if self._seen is None or self._seen[0] != path:
            self._seen = (path, sig)  # the first look, or a reload named another file
            return
        if sig == self._seen[1]:
            return
        try:
            geo = GeoResolver(self.app.config)
        except Exception as e:  # a half-written file (maxminddb's own errors too): next look
            log_event(log, "geoip_reopen_failed", level=logging.WARNING, error=str(e))
            return
        self._seen = (path, sig)
        old = self.app.geo
        set_geo(self.app, geo)
        old.close()
        log_event(log, "geoip_reopened", path=path)


def _signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
