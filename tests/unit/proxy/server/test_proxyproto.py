"""PROXY protocol v1/v2 parsing, byte for byte, without sockets."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from proxy.server.proxyproto import (
    V1_MAX_LENGTH,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    parse_header,
)

RESP = b"*1\r\n$4\r\nPING\r\n"


def v2(command: int, family: int, body: bytes, length: int | None = None) -> bytes:
    n = len(body) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", command, family, n) + body


def v2_tcp4(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    body = (
        ipaddress.IPv4Address(src).packed
        + ipaddress.IPv4Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )
    return v2(0x21, 0x11, body + tlvs)


def v2_tcp6(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"") -> bytes:
    body = (
        ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + struct.pack("!HH", sport, dport)
    )
    return v2(0x21, 0x21, body + tlvs)


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


V1_TCP4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 56324 6380\r\n"
V1_TCP6 = b"PROXY TCP6 2400:4050:1234::1 2001:db8::2 40000 6380\r\n"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
V1_UNKNOWN_ADDRS = b"PROXY UNKNOWN ff:: ee:: 1 2\r\n"
V1_LONGEST = (
    b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
)
V2_TCP4 = v2_tcp4("198.51.100.9", "10.0.0.1", 51000, 6380)
V2_TCP6 = v2_tcp6("2a02:6680:1100::5", "::1", 443, 6380)
V2_LOCAL = v2(0x20, 0x00, b"")
V2_LOCAL_WITH_BODY = v2(0x20, 0x11, b"\x00" * 12)
V2_UNSPEC = v2(0x21, 0x00, b"")
V2_TLVS = v2_tcp4(
    "1.2.4.8",
    "10.0.0.1",
    1234,
    6380,
    tlvs=tlv(0x05, b"vpce-0123456789abcdef0")  # unique id
    + tlv(0x04, b"")  # NOOP, empty
    + tlv(0xEA, b"\x01vpce-0a1b2c3d"),  # AWS custom type
)

EXPECTED = {
    "v1 tcp4": (V1_TCP4, ProxyHeader(1, False, "203.0.113.7", 56324, "10.0.0.1", 6380, 44)),
    "v1 tcp6": (
        V1_TCP6,
        ProxyHeader(1, False, "2400:4050:1234::1", 40000, "2001:db8::2", 6380, len(V1_TCP6)),
    ),
    "v1 unknown": (V1_UNKNOWN, ProxyHeader(1, True, None, None, None, None, 15)),
    "v1 unknown with addresses": (
        V1_UNKNOWN_ADDRS,
        ProxyHeader(1, True, None, None, None, None, len(V1_UNKNOWN_ADDRS)),
    ),
    "v1 longest": (
        V1_LONGEST,
        ProxyHeader(
            1,
            False,
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            65535,
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            65535,
            len(V1_LONGEST),
        ),
    ),
    "v2 tcp4": (V2_TCP4, ProxyHeader(2, False, "198.51.100.9", 51000, "10.0.0.1", 6380, 28)),
    "v2 tcp6": (V2_TCP6, ProxyHeader(2, False, "2a02:6680:1100::5", 443, "::1", 6380, 52)),
    "v2 local": (V2_LOCAL, ProxyHeader(2, True, None, None, None, None, 16)),
    "v2 local with addresses": (
        V2_LOCAL_WITH_BODY,
        ProxyHeader(2, True, None, None, None, None, 28),
    ),
    "v2 proxy unspec": (V2_UNSPEC, ProxyHeader(2, True, None, None, None, None, 16)),
    "v2 tlvs": (
        V2_TLVS,
        ProxyHeader(2, False, "1.2.4.8", 1234, "10.0.0.1", 6380, len(V2_TLVS)),
    ),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_whole_header(name: str) -> None:
    raw, expected = EXPECTED[name]
    assert parse_header(raw) == expected
    assert expected.consumed == len(raw)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bytes_after_the_header_belong_to_the_client(name: str) -> None:
    raw, expected = EXPECTED[name]
    buf = bytearray(raw + RESP)
    header = parse_header(buf)
    assert header == expected
    assert bytes(buf[header.consumed :]) == RESP


@pytest.mark.parametrize("name", list(EXPECTED))
def test_split_at_every_offset(name: str) -> None:
    raw, expected = EXPECTED[name]
    for cut in range(len(raw)):
        assert parse_header(raw[:cut]) is None, f"decided early at {cut} bytes"
    assert parse_header(raw) == expected


def test_v1_longest_line_is_within_limit() -> None:
    assert len(V1_LONGEST) == 104 <= V1_MAX_LENGTH


# --- not a PROXY header at all: decided at the first byte that differs ---------------


@pytest.mark.parametrize(
    "data",
    [
        b"*",  # the first byte of any RESP command
        RESP,
        b"PING\r\n",  # an inline command
        b"PROXZ",
        b"proxy ",
        b"\r\n\r\n\x00\r\nQUIX",
        b"\r\n\r\n\x00\r\nQUIT\r",  # one byte short of a v2 signature
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01",  # a TLS ClientHello
    ],
)
def test_plain_resp_or_other_protocol_is_rejected(data: bytes) -> None:
    with pytest.raises(ProxyProtocolError, match="not a PROXY protocol header"):
        parse_header(data)


@pytest.mark.parametrize("data", [b"P", b"PROXY", b"\r", b"\r\n\r\n\x00", V2_SIGNATURE[:-1]])
def test_signature_prefix_is_undecided(data: bytes) -> None:
    assert parse_header(data) is None


def test_empty_buffer_needs_more() -> None:
    assert parse_header(b"") is None


# --- malformed v1 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "protocol"),
        (b"PROXY UNKNOWNX\r\n", "protocol"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "5 space-separated fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "5 space-separated fields"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "5 space-separated fields"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "5 space-separated fields"),
        (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "source address"),
        (b"PROXY TCP4 1.2.3.4 host 1 2\r\n", "destination address"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "not IPv4"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "not IPv6"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "source port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "destination port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CR or LF"),
        (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "CR or LF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\x002\r\n", "non-printable"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xb2\r\n", "non-printable"),
    ],
)
def test_malformed_v1(line: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_header(line)


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        (b"PROXY X", "protocol"),
        (b"PROXY TCP4-", "protocol"),
        (b"PROXY UNKNOWN!", "protocol"),
        (b"PROXY TCP4 1.2.3.4\n", "CR or LF"),
        (b"PROXY TCP4 1.2.3.4\rX", "CR or LF"),
        (b"PROXY TCP4 1.2\x01", "non-printable"),
    ],
)
def test_malformed_v1_is_rejected_before_the_line_ends(prefix: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_header(prefix)


def test_v1_line_without_crlf_waits_until_the_limit() -> None:
    line = b"PROXY TCP4 " + b"1" * (V1_MAX_LENGTH - 12)
    assert len(line) == V1_MAX_LENGTH - 1
    assert parse_header(line) is None
    assert parse_header(line[:-1] + b"\r") is None  # the LF may still come
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        parse_header(line + b"1")


def test_v1_line_with_crlf_past_the_limit_is_too_long() -> None:
    line = b"PROXY UNKNOWN " + b"x" * (V1_MAX_LENGTH - 15) + b"\r\n"
    assert len(line) == V1_MAX_LENGTH + 1
    with pytest.raises(ProxyProtocolError, match="longer than 107"):
        parse_header(line)
    # One byte shorter fits exactly.
    assert parse_header(line[: V1_MAX_LENGTH - 3] + b"\r\n") is not None


# --- malformed v2 ------------------------------------------------------------------


def header_bytes(command: int, family: int, length: int) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", command, family, length)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (V2_SIGNATURE + b"\x11", "version 1 is not 2"),
        (V2_SIGNATURE + b"\x31", "version 3 is not 2"),
        (V2_SIGNATURE + b"\x22", "command 2 is not LOCAL or PROXY"),
        (V2_SIGNATURE + b"\x2f", "command 15"),
        (V2_SIGNATURE + b"\x21\x12", "UDP over IPv4"),
        (V2_SIGNATURE + b"\x21\x22", "UDP over IPv6"),
        (V2_SIGNATURE + b"\x21\x31", "UNIX stream"),
        (V2_SIGNATURE + b"\x21\x32", "UNIX datagram"),
        (V2_SIGNATURE + b"\x21\x41", "0x41 is invalid"),
        (V2_SIGNATURE + b"\x21\x13", "0x13 is invalid"),
        (V2_SIGNATURE + b"\x21\x10", "0x10 is invalid"),
        (header_bytes(0x21, 0x11, 11), "too short"),
        (header_bytes(0x21, 0x21, 35), "too short"),
        (header_bytes(0x21, 0x21, 12), "too short"),
        (header_bytes(0x21, 0x11, V2_MAX_LENGTH + 1), "exceeds the limit"),
        (header_bytes(0x20, 0x00, 0xFFFF), "exceeds the limit"),
    ],
)
def test_malformed_v2_is_rejected_before_the_body(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse_header(data)


def test_v2_length_limit_is_adjustable() -> None:
    raw = v2_tcp4("1.2.3.4", "5.6.7.8", 1, 2, tlvs=tlv(0xE0, b"x" * 100))
    assert parse_header(raw) is not None
    with pytest.raises(ProxyProtocolError, match="exceeds the limit of 50"):
        parse_header(raw, max_v2_length=50)


def test_v2_at_the_length_limit_waits_for_the_body() -> None:
    raw = v2_tcp4("1.2.3.4", "5.6.7.8", 1, 2, tlvs=tlv(0xE0, b"x" * (V2_MAX_LENGTH - 15)))
    assert len(raw) == 16 + V2_MAX_LENGTH
    assert parse_header(raw[:-1]) is None
    header = parse_header(raw + RESP)
    assert header is not None and header.consumed == len(raw)


@pytest.mark.parametrize(
    "tlvs",
    [
        b"\x05",  # type only
        b"\x05\x00",  # half a length
        tlv(0x05, b"abc")[:-1],  # value runs past the header
        tlv(0x04, b"") + b"\x05\x00\x09ab",
    ],
)
def test_v2_truncated_tlv(tlvs: bytes) -> None:
    with pytest.raises(ProxyProtocolError, match="TLV"):
        parse_header(v2_tcp4("1.2.3.4", "5.6.7.8", 1, 2, tlvs=tlvs))


def test_v2_local_ignores_its_body() -> None:
    # LOCAL: the body is not inspected, even when it is not a valid address block.
    raw = v2(0x20, 0x12, b"\xff" * 7)
    assert parse_header(raw) == ProxyHeader(2, True, None, None, None, None, 23)


def test_v2_ipv4_mapped_source_is_reported_as_sent() -> None:
    header = parse_header(v2_tcp6("::ffff:1.2.4.8", "::1", 1, 2))
    assert header is not None
    assert ipaddress.ip_address(header.src_ip or "") == ipaddress.ip_address("::ffff:1.2.4.8")


def test_v1_and_v2_agree() -> None:
    one = parse_header(b"PROXY TCP4 1.2.4.8 10.0.0.1 1234 6380\r\n")
    two = parse_header(v2_tcp4("1.2.4.8", "10.0.0.1", 1234, 6380))
    assert one is not None and two is not None
    fields = ("local", "src_ip", "src_port", "dst_ip", "dst_port")
    assert [getattr(one, f) for f in fields] == [getattr(two, f) for f in fields]
