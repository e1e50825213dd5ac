"""Event loop selection for the whole suite: uvloop unless GEOREDIS_LOOP=asyncio.

The proxy runs on uvloop in production and must also work on the plain asyncio loop
(docs/architecture.md, "Tests"), so the suite runs under either: `GEOREDIS_LOOP=asyncio pytest`.

pytest-asyncio >= 1.3 builds loops through the `pytest_asyncio_loop_factories` hook (and
deprecates overriding `event_loop_policy`); older 1.x releases only know the
`event_loop_policy` fixture. Whichever the installed plugin supports is defined below.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import pytest
import pytest_asyncio.plugin
import uvloop

LOOP = os.environ.get("GEOREDIS_LOOP", "uvloop").strip().lower() or "uvloop"
if LOOP not in ("uvloop", "asyncio"):
    raise pytest.UsageError(f"GEOREDIS_LOOP must be 'uvloop' or 'asyncio', not {LOOP!r}")

# The loop class tests can assert on (tests/integration/test_infra.py does).
EXPECTED_LOOP_TYPE: type[asyncio.AbstractEventLoop] = (
    asyncio.SelectorEventLoop if LOOP == "asyncio" else uvloop.Loop
)

_HAS_FACTORY_HOOK = hasattr(
    getattr(pytest_asyncio.plugin, "PytestAsyncioSpecs", None),
    "pytest_asyncio_loop_factories",
)

if _HAS_FACTORY_HOOK:

    @pytest.hookimpl(optionalhook=True)
    def pytest_asyncio_loop_factories(
        config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
        factory = asyncio.new_event_loop if LOOP == "asyncio" else uvloop.new_event_loop
        return {LOOP: factory}

else:

    @pytest.fixture(scope="session")
    def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
        if LOOP == "asyncio":
            return asyncio.DefaultEventLoopPolicy()
        policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
        return policy
