"""Unit tests for routing.redirect: MOVED / ASK / TRYAGAIN / CLUSTERDOWN / CROSSSLOT replies.

The texts are redis-server's (7.0 `clusterRedirectClient` and `getNodeByQuery`); the
endpoint forms are those `cluster-preferred-endpoint-type` gives (ip, hostname, "?" when
hostnames are preferred but none was announced, "" for unknown-endpoint). No sockets.
"""

from __future__ import annotations

import pytest

from routing.redirect import (
    CLUSTER_ERROR_PREFIXES,
    ClusterDown,
    CrossSlot,
    Redirect,
    TryAgain,
    backoff,
    parse_cluster_error,
    parse_redirect,
)


@pytest.mark.parametrize(
    "error, want",
    [
        (b"-MOVED 3999 127.0.0.1:6381\r\n", Redirect(False, 3999, "127.0.0.1", 6381)),
        (b"MOVED 3999 127.0.0.1:6381", Redirect(False, 3999, "127.0.0.1", 6381)),
        ("MOVED 0 10.0.0.1:7000", Redirect(False, 0, "10.0.0.1", 7000)),
        (b"-ASK 16383 10.0.0.2:7001\r\n", Redirect(True, 16383, "10.0.0.2", 7001)),
        # IPv6 as Redis writes it (no brackets: the port follows the last colon) ...
        (b"-MOVED 12182 ::1:6380\r\n", Redirect(False, 12182, "::1", 6380)),
        (b"-MOVED 1 2001:db8::7:6380\r\n", Redirect(False, 1, "2001:db8::7", 6380)),
        # ... and as a person would.
        (b"-ASK 1 [2001:db8::7]:6380\r\n", Redirect(True, 1, "2001:db8::7", 6380)),
        (b"-MOVED 12182 node2.geo.example:43935\r\n",
         Redirect(False, 12182, "node2.geo.example", 43935)),
        (b"-MOVED 12182 :43935\r\n", Redirect(False, 12182, "", 43935)),  # unknown-endpoint
        (b"-MOVED 12182 ?:43935\r\n", Redirect(False, 12182, "?", 43935)),  # no hostname
    ],
)  # fmt: skip
def test_redirections(error: bytes | str, want: Redirect) -> None:
    assert parse_redirect(error) == want
    assert parse_cluster_error(error) == want


def test_target_of_each_endpoint_form() -> None:
    assert Redirect(False, 1, "10.0.0.1", 7000).target("10.9.9.9") == ("10.0.0.1", 7000)
    # No endpoint: the same host as the node that replied, the port given.
    assert Redirect(False, 1, "", 7000).target("10.9.9.9") == ("10.9.9.9", 7000)
    # "?": nowhere to go; the caller refreshes the map (which carries the IP).
    assert Redirect(True, 1, "?", 7000).target("10.9.9.9") is None


@pytest.mark.parametrize(
    "error",
    [
        b"-MOVED\r\n",
        b"-MOVED 1\r\n",
        b"-MOVED 1 host\r\n",  # no port
        b"-MOVED 1 host:\r\n",
        b"-MOVED x host:1\r\n",
        b"-MOVED 16384 host:1\r\n",  # no such slot
        b"-MOVED 1 host:0\r\n",
        b"-MOVED 1 host:65536\r\n",
        b"-MOVED -1 host:1\r\n",
        b"-MOVED 1 host:+1\r\n",
        "MOVED 1 host:\u0661",  # an Arabic-Indic digit: str.isdigit says yes, Redis no
        b"-MOVED 1 host:1 extra\r\n",
        b"-MOVEDX 1 host:1\r\n",
        b"-moved 1 host:1\r\n",  # Redis' codes are upper case
        b"-ERR MOVED 1 host:1\r\n",
        b"+MOVED 1 host:1\r\n",  # not an error
    ],
)
def test_malformed_redirections_are_none(error: bytes | str) -> None:
    assert parse_redirect(error) is None
    assert not isinstance(parse_cluster_error(error), Redirect)


def test_other_cluster_errors() -> None:
    assert parse_cluster_error(
        b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
    ) == TryAgain("TRYAGAIN Multiple keys request during rehashing of slot")
    down = parse_cluster_error(b"-CLUSTERDOWN Hash slot not served\r\n")
    assert down == ClusterDown("CLUSTERDOWN Hash slot not served")
    assert isinstance(down, ClusterDown) and down.slot_not_served
    ro = parse_cluster_error("CLUSTERDOWN The cluster is down and only accepts read commands")
    assert isinstance(ro, ClusterDown) and not ro.slot_not_served
    assert parse_cluster_error(
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    ) == CrossSlot("CROSSSLOT Keys in request don't hash to the same slot")


@pytest.mark.parametrize(
    "error",
    [b"-ERR unknown command\r\n", b"-WRONGTYPE x\r\n", b"-READONLY x\r\n", b"-ASKING\r\n", b""],
)
def test_other_errors_are_none(error: bytes) -> None:
    assert parse_cluster_error(error) is None


def test_prefixes_select_exactly_the_cluster_errors() -> None:
    """The cheap first test on raw replies lets every cluster error through."""
    cluster = [
        b"-MOVED 1 h:1\r\n", b"-ASK 1 h:1\r\n", b"-TRYAGAIN x\r\n",
        b"-CLUSTERDOWN x\r\n", b"-CROSSSLOT x\r\n",
    ]  # fmt: skip
    assert all(e.startswith(CLUSTER_ERROR_PREFIXES) for e in cluster)
    assert not b"-ASKING\r\n".startswith(CLUSTER_ERROR_PREFIXES)
    assert not b"-ERR x\r\n".startswith(CLUSTER_ERROR_PREFIXES)


def test_backoff_doubles_to_a_cap_and_ends() -> None:
    assert [backoff(n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.4, 0.8, None]
    assert backoff(0) is None
    assert backoff(4, base=0.5, cap=1.0) == 1.0
    assert backoff(3, attempts=2) is None
