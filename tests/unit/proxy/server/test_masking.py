"""CONFIG GET replies with the backends' secrets hidden, in RESP2 and RESP3 (no sockets)."""

from __future__ import annotations

import hiredis

from proxy.resp.replies import encode
from proxy.server.masking import HIDDEN, mask


def _decode(reply: bytes) -> object:
    r = hiredis.Reader()
    r.feed(reply)
    return r.gets()


def test_resp2_pairs_keep_their_order_and_lose_their_secrets() -> None:
    reply = encode([b"masterauth", b"pw", b"port", b"6379", b"requirepass", b"pw"], 2)
    assert _decode(mask(reply, 2)) == [b"masterauth", HIDDEN, b"port", b"6379",
                                       b"requirepass", HIDDEN]  # fmt: skip


def test_resp3_map() -> None:
    reply = encode({"requirepass": b"pw", "maxmemory": b"0"}, 3)
    assert _decode(mask(reply, 3)) == {b"requirepass": HIDDEN, b"maxmemory": b"0"}


def test_no_password_set_stays_empty_and_errors_pass() -> None:
    reply = encode([b"requirepass", b""], 2)
    assert mask(reply, 2) == reply
    err = b"-ERR Unknown subcommand\r\n"
    assert mask(err, 2) == err


def test_names_match_in_any_case() -> None:
    reply = encode([b"RequirePass", b"pw"], 2)
    assert b"pw" not in mask(reply, 2)
