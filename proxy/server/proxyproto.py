"""A sans-IO parser for the HAProxy PROXY protocol, versions 1 (text) and 2 (binary).

A load balancer in front of the proxy (HAProxy, AWS NLB, nginx stream...) prepends one
PROXY header to each TCP connection; it carries the client's real address, which is what
geo routing needs. Spec: haproxy's doc/proxy-protocol.txt.

`parse_header` is called with everything the client has sent so far. It returns None
while the buffer is a prefix of what may still become a valid header, a `ProxyHeader`
once a whole header is there, and raises `ProxyProtocolError` as soon as the bytes can no
longer be a header. Deciding early matters: a client that talks RESP straight to a port
that expects PROXY headers (`*1\r\n$4\r\nPING...`) gets its error at the first byte, not
after a timeout. No asyncio and no sockets here (docs/architecture.md, "Layers").
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from proxy.errors import ProxyHeaderError

__all__ = [
    "V1_MAX_LENGTH",
    "V2_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "parse_header",
]

V1_SIGNATURE = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# The longest v1 line, CRLF included ("PROXY TCP6" with two full IPv6 addresses is 104).
V1_MAX_LENGTH = 107
# The v2 length field allows 65535 bytes of addresses and TLVs. Real senders use a few
# hundred at most (addresses plus e.g. an AWS VPC endpoint TLV); the cap keeps a hostile
# client from making us buffer 64 KiB before we answer.
V2_MAX_LENGTH = 4096

_V2_FIXED = 16  # signature, version/command, family/protocol, 2-byte length
_V2_LOCAL = 0x20
_V2_PROXY = 0x21
_V2_UNSPEC = 0x00
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21
# Address block size per family/protocol byte: src addr, dst addr, src port, dst port.
_V2_ADDRESS_LEN = {_V2_TCP4: 12, _V2_TCP6: 36}
_V2_FAMILY_NAMES = {
    0x12: "UDP over IPv4",
    0x22: "UDP over IPv6",
    0x31: "UNIX stream",
    0x32: "UNIX datagram",
}

# What may follow "PROXY ": a prefix of the buffer must match one of these to go on.
_V1_PROTOCOLS = (b"TCP4 ", b"TCP6 ", b"UNKNOWN ", b"UNKNOWN\r")
_V1_TCP = {b"TCP4": 4, b"TCP6": 6}


ProxyProtocolError = ProxyHeaderError  # the parser's name for it


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    # True for v2 LOCAL (health checks from the balancer itself), v1 UNKNOWN and v2
    # PROXY with an UNSPEC family: the connection's own endpoints are the ones to use.
    local: bool
    src_ip: str | None
    src_port: int | None
    dst_ip: str | None
    dst_port: int | None
    # Bytes of the header; whatever follows is the start of the client's RESP stream.
    consumed: int


def parse_header(
    buf: bytes | bytearray, *, max_v2_length: int = V2_MAX_LENGTH
) -> ProxyHeader | None:
    """Parse a PROXY header at the start of `buf`; None means "send more bytes"."""
    data = bytes(buf[: max(V1_MAX_LENGTH, _V2_FIXED + max_v2_length)])
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data, max_v2_length)
    if data.startswith(V1_SIGNATURE):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data) or V1_SIGNATURE.startswith(data):
        return None  # an empty buffer or a prefix of a signature: could be either yet
    raise ProxyProtocolError(f"not a PROXY protocol header (starts with {data[:8]!r})")


# --- version 1 ---------------------------------------------------------------------


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        _check_v1_prefix(data)
        return None
    line = data[len(V1_SIGNATURE) : end]
    consumed = end + 2
    _check_v1_bytes(line)
    proto = line.split(b" ", 1)[0]
    if proto == b"UNKNOWN":
        # The spec says a receiver must ignore whatever follows UNKNOWN.
        return ProxyHeader(1, True, None, None, None, None, consumed)
    version = _V1_TCP.get(proto)
    if version is None:
        raise ProxyProtocolError(f"PROXY v1 protocol {proto!r} is not TCP4, TCP6 or UNKNOWN")
    parts = line.decode("ascii").split(" ")
    if len(parts) != 5:
        raise ProxyProtocolError(
            f"PROXY v1 line needs 5 space-separated fields after PROXY, got {len(parts)}"
        )
    _, src, dst, sport, dport = parts
    return ProxyHeader(
        1,
        False,
        _v1_address(src, version, "source"),
        _v1_port(sport, "source"),
        _v1_address(dst, version, "destination"),
        _v1_port(dport, "destination"),
        consumed,
    )


def _check_v1_prefix(data: bytes) -> None:
    """Reject an incomplete v1 line as soon as it can no longer become a valid one."""
    if len(data) >= V1_MAX_LENGTH:
        raise ProxyProtocolError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes")
    # A CR as the last byte is fine: its LF may still come.
    _check_v1_bytes(data[:-1] if data.endswith(b"\r") else data)
    rest = data[len(V1_SIGNATURE) :]
    if not any(p.startswith(rest) or rest.startswith(p) for p in _V1_PROTOCOLS):
        raise ProxyProtocolError(f"PROXY v1 protocol {rest[:8]!r} is not TCP4, TCP6 or UNKNOWN")


def _check_v1_bytes(text: bytes) -> None:
    if b"\r" in text or b"\n" in text:
        raise ProxyProtocolError("PROXY v1 line contains a bare CR or LF")
    if not all(0x20 <= b <= 0x7E for b in text):
        raise ProxyProtocolError("PROXY v1 line contains non-printable bytes")


def _v1_address(text: str, version: int, which: str) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError(f"PROXY v1 {which} address {text!r} is not an IP") from None
    if addr.version != version:
        raise ProxyProtocolError(f"PROXY v1 {which} address {text!r} is not IPv{version}")
    return str(addr)


def _v1_port(text: str, which: str) -> int:
    # The line is printable ASCII, so isdigit() means 0-9 only.
    if not (1 <= len(text) <= 5 and text.isdigit()) or int(text) > 65535:
        raise ProxyProtocolError(f"PROXY v1 {which} port {text!r} is not in 0..65535")
    return int(text)


# --- version 2 ---------------------------------------------------------------------


def _parse_v2(data: bytes, max_length: int) -> ProxyHeader | None:
    # Check each fixed field as soon as it has arrived, before waiting for the rest.
    sig = len(V2_SIGNATURE)
    if len(data) > sig:
        command = data[sig]
        if command >> 4 != 2:
            raise ProxyProtocolError(f"PROXY v2 version {command >> 4} is not 2")
        if command not in (_V2_LOCAL, _V2_PROXY):
            raise ProxyProtocolError(f"PROXY v2 command {command & 0x0F} is not LOCAL or PROXY")
    if len(data) > sig + 1 and data[sig] == _V2_PROXY:
        _check_v2_family(data[sig + 1])
    if len(data) < _V2_FIXED:
        return None
    command, family, length = struct.unpack_from("!BBH", data, sig)
    if length > max_length:
        raise ProxyProtocolError(f"PROXY v2 length {length} exceeds the limit of {max_length}")
    needed = _V2_ADDRESS_LEN.get(family, 0) if command == _V2_PROXY else 0
    if length < needed:
        raise ProxyProtocolError(
            f"PROXY v2 length {length} is too short for the family's {needed}-byte addresses"
        )
    consumed = _V2_FIXED + length
    if len(data) < consumed:
        return None
    if command == _V2_LOCAL or family == _V2_UNSPEC:
        # LOCAL: the balancer's own connection (a health check); the address block, if
        # any, is to be ignored. PROXY with UNSPEC: the sender does not know the client.
        return ProxyHeader(2, True, None, None, None, None, consumed)
    block = data[_V2_FIXED:consumed]
    _check_tlvs(block[needed:])
    if family == _V2_TCP4:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", block)
        src4, dst4 = ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst)
        return ProxyHeader(2, False, str(src4), sport, str(dst4), dport, consumed)
    src, dst, sport, dport = struct.unpack_from("!16s16sHH", block)
    src6, dst6 = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    return ProxyHeader(2, False, str(src6), sport, str(dst6), dport, consumed)


def _check_v2_family(family: int) -> None:
    if family in (_V2_UNSPEC, _V2_TCP4, _V2_TCP6):
        return
    name = _V2_FAMILY_NAMES.get(family)
    if name is not None:
        raise ProxyProtocolError(f"PROXY v2 family {name} is not supported (TCP only)")
    raise ProxyProtocolError(f"PROXY v2 family/protocol byte 0x{family:02x} is invalid")


def _check_tlvs(tlvs: bytes) -> None:
    """Walk the TLVs after the addresses; none is used, but they must be well formed.

    A TLV that runs past the header means the length field or the sender is broken,
    and the bytes we would hand to the RESP reader cannot be trusted either.
    """
    pos = 0
    while pos < len(tlvs):
        if pos + 3 > len(tlvs):
            raise ProxyProtocolError("PROXY v2 TLV header is truncated")
        kind, value_len = struct.unpack_from("!BH", tlvs, pos)
        pos += 3 + value_len
        if pos > len(tlvs):
            raise ProxyProtocolError(f"PROXY v2 TLV type 0x{kind:02x} runs past the header")


def fmt_addr(addr: object) -> str:
    """A socket address as Redis writes it: host:port, [v6]:port."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr or "")
