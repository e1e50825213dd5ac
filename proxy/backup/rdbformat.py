"""The RDB file format as plain functions over a buffer, for `rdb` and `rdbread` to walk with.

Layouts are Redis' own (src/rdb.h and rdbLoadObject/rdbLoadRio in src/rdb.c, 2.6 to
7.4: RDB versions 6 to 12). Every reader takes the buffer and a position and returns
the position after what it read; none changes anything, so a caller that gets `Short`
(the buffer ends first) simply tries again from the same position once more bytes came.
`Malformed` carries what is wrong and the buffer position it was seen at; the walker
turns it into an `RdbError` with the file offset.

A string is stepped over, never copied, except where its bytes matter (key names, AUX
fields, the value of a sampled string key). One longer than `BIG` is never waited for:
`skip_string` returns an end beyond the buffer, and the walker counts those bytes down
as they arrive instead of buffering them. No asyncio, no I/O (docs/architecture.md,
"Layers").
"""

from __future__ import annotations

__all__ = [
    "AUX",
    "BIG",
    "BLOB_TYPES",
    "COLLECTIONS",
    "CONTAINER",
    "EOF",
    "EXPIRETIME",
    "EXPIRETIME_MS",
    "FREQ",
    "FUNCTION2",
    "FUNCTION_PRE_GA",
    "HASH_LISTPACK_EX",
    "HASH_METADATA",
    "IDLE",
    "INT8",
    "INT16",
    "INT32",
    "LENGTH",
    "LZF",
    "MODULE_2",
    "MODULE_AUX",
    "MODULE_VALUE_OPS",
    "NODE_KEY",
    "OLD_DOUBLE",
    "RAW",
    "REFUSED_TYPES",
    "RESIZEDB",
    "SAMPLE_VALUE_MAX",
    "SELECTDB",
    "SLOT_INFO",
    "STREAMS",
    "STRING",
    "TYPE_NAMES",
    "Kind",
    "Layout",
    "Malformed",
    "Short",
    "lzf_decompress",
    "plain_value",
    "read_len",
    "read_whole",
    "skip_elements",
    "skip_item",
    "skip_string",
    "starts_with",
    "string_span",
]

# Strings up to this many bytes are buffered whole before being stepped over; longer
# ones are skipped by count as they stream. Big enough that ordinary values (and every
# listpack, whose nodes Redis keeps near 8 KiB) never take the slower skip path.
BIG = 64 * 1024
SAMPLE_VALUE_MAX = 4096

# Opcodes (src/rdb.h, RDB_OPCODE_*).
SLOT_INFO, FUNCTION2, FUNCTION_PRE_GA, MODULE_AUX = 0xF4, 0xF5, 0xF6, 0xF7
IDLE, FREQ, AUX, RESIZEDB = 0xF8, 0xF9, 0xFA, 0xFB
EXPIRETIME_MS, EXPIRETIME, SELECTDB, EOF = 0xFC, 0xFD, 0xFE, 0xFF

# Value types (RDB_TYPE_*) and the TYPE reply of each.
MODULE_2, HASH_METADATA, HASH_LISTPACK_EX = 7, 24, 25
STREAMS = frozenset({15, 19, 21})  # STREAM_LISTPACKS, _2 (7.0), _3 (7.2)
TYPE_NAMES: dict[int, str] = {
    **dict.fromkeys((0,), "string"),
    **dict.fromkeys((1, 10, 14, 18), "list"),
    **dict.fromkeys((2, 11, 20), "set"),
    **dict.fromkeys((3, 5, 12, 17), "zset"),
    **dict.fromkeys((4, 9, 13, 16, HASH_METADATA, HASH_LISTPACK_EX), "hash"),
    **dict.fromkeys(STREAMS, "stream"),
    MODULE_2: "module",
}
# Types whose value is one string (a plain string, or one encoded blob: zipmap, ziplist,
# intset, listpack); HASH_LISTPACK_EX puts an 8-byte minimum field expire before it.
BLOB_TYPES = frozenset({0, 9, 10, 11, 12, 13, 16, 17, 20, HASH_LISTPACK_EX})
# Refused rather than guessed: formats no released Redis writes. (Valkey 9 writes a hash
# of its own as type 22, but in RDB version 80, which the walker refuses anyway.)
REFUSED_TYPES = {
    6: "a module value in the 4.0 release-candidate format (type 6)",
    22: "a hash with field TTLs in the 7.4 release-candidate format (type 22)",
    23: "a hash listpack with field TTLs in the 7.4 release-candidate format (type 23)",
}

# What an element of a collection is made of, item by item: a string, a length, an old
# text double (1-byte length; 253..255 are nan/+inf/-inf with nothing after), a stream
# node key (a raw 16-byte string), a quicklist node's container (a length, 1 or 2), or
# an int: that many fixed bytes.
STRING, LENGTH, OLD_DOUBLE, NODE_KEY, CONTAINER = "s", "l", "d", "k", "c"
Kind = str | int
Layout = tuple[Kind, ...]
COLLECTIONS: dict[int, Layout] = {
    1: (STRING,),  # list: elements
    2: (STRING,),  # set: members
    14: (STRING,),  # quicklist: ziplists
    3: (STRING, OLD_DOUBLE),  # zset: member, score as text
    5: (STRING, 8),  # ZSET_2: member, binary double
    4: (STRING, STRING),  # hash: field, value
    18: (CONTAINER, STRING),  # QUICKLIST_2: container, listpack or plain element
    HASH_METADATA: (LENGTH, STRING, STRING),  # TTL relative to the minimum, field, value
}
# A module value is opcodes till MODULE_OPCODE_EOF (0): SINT, UINT, FLOAT, DOUBLE, STRING.
MODULE_VALUE_OPS: dict[int, Kind] = {1: LENGTH, 2: LENGTH, 3: 4, 4: 8, 5: STRING}

# String encodings, as `string_span` reports them: RAW, or Redis' RDB_ENC_* (0..3).
RAW, INT8, INT16, INT32, LZF = -1, 0, 1, 2, 3
_INT_WIDTH = (1, 2, 4)


class Short(Exception):
    """The buffer ends before the thing being read does."""


class Malformed(Exception):
    """The bytes cannot be an RDB: `what` is wrong at buffer position `pos`."""

    def __init__(self, what: str, pos: int) -> None:
        super().__init__(what)
        self.what = what
        self.pos = pos


def read_len(buf: bytearray, pos: int) -> tuple[int, int]:
    """A length (6-bit, 14-bit, 32- or 64-bit big-endian): (value, end)."""
    size = len(buf)
    if pos >= size:
        raise Short
    first = buf[pos]
    if first < 0x40:
        return first, pos + 1
    if first < 0x80:
        if pos + 1 >= size:
            raise Short
        return ((first & 0x3F) << 8) | buf[pos + 1], pos + 2
    if first == 0x80 or first == 0x81:
        end = pos + (5 if first == 0x80 else 9)
        if end > size:
            raise Short
        return int.from_bytes(buf[pos + 1 : end], "big"), end
    if first >= 0xC0:
        raise Malformed(f"a string encoding (0x{first:02x}) where a length belongs", pos)
    raise Malformed(f"unknown length encoding 0x{first:02x}", pos)


def string_span(buf: bytearray, pos: int) -> tuple[int, int, int]:
    """A string's header: (encoding, start, end) of its payload. Only the header must be
    in the buffer: `end` may lie beyond it. LZF's payload is the compressed bytes."""
    if pos >= len(buf):
        raise Short
    first = buf[pos]
    if first < 0x40:  # the common case, inline: a 6-bit length
        return RAW, pos + 1, pos + 1 + first
    if first < 0xC0:
        n, start = read_len(buf, pos)
        return RAW, start, start + n
    enc = first & 0x3F
    if enc < LZF:
        return enc, pos + 1, pos + 1 + _INT_WIDTH[enc]
    if enc == LZF:
        clen, p = read_len(buf, pos + 1)
        _, start = read_len(buf, p)
        return LZF, start, start + clen
    raise Malformed(f"unknown string encoding 0x{first:02x}", pos)


def skip_string(buf: bytearray, pos: int) -> int:
    """The end of the string at `pos`: in the buffer, or (a string longer than BIG)
    beyond it, for the walker to skip by count."""
    _, start, end = string_span(buf, pos)
    if end > len(buf) and end - start <= BIG:
        raise Short
    return end


def read_whole(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    """A string's value, decoded (int-encoded as its digits, LZF decompressed): (value, end).

    For key names and AUX fields. One longer than BIG is None, its end beyond the buffer
    maybe: a walker that buffered whatever a length said would hold the rest of the
    file for one corrupt length."""
    if pos < len(buf) and buf[pos] < 0x40:  # the common case, inline: short and plain
        end = pos + 1 + buf[pos]
        if end > len(buf):
            raise Short
        return bytes(buf[pos + 1 : end]), end
    enc, start, end = string_span(buf, pos)
    if end - start > BIG:
        return None, end
    if end > len(buf):
        raise Short
    if enc == RAW:
        return bytes(buf[start:end]), end
    if enc == LZF:
        _, p = read_len(buf, pos + 1)
        size, _ = read_len(buf, p)
        try:
            return lzf_decompress(bytes(buf[start:end]), size), end
        except ValueError as e:
            raise Malformed(f"bad LZF string: {e}", pos) from None
    return str(int.from_bytes(buf[start:end], "little", signed=True)).encode(), end


def starts_with(buf: bytearray, pos: int, prefix: bytes) -> bool:
    """Whether the string at `pos`, longer than BIG, starts with `prefix` (the start of
    its payload must be in the buffer: BIG bytes of it if LZF-compressed)."""
    enc, start, _ = string_span(buf, pos)
    if enc == RAW:
        if start + len(prefix) > len(buf):
            raise Short
        return buf[start : start + len(prefix)] == prefix
    if start + BIG > len(buf):
        raise Short
    try:
        return lzf_decompress(bytes(buf[start : start + BIG]), len(prefix), head=True) == prefix
    except ValueError as e:
        raise Malformed(f"bad LZF string: {e}", pos) from None


def plain_value(buf: bytearray, enc: int, start: int, end: int) -> bytes | None:
    """A sampled string key's value: a plain or int-encoded one of at most 4096 bytes."""
    if enc == LZF or end > len(buf) or end - start > SAMPLE_VALUE_MAX:
        return None
    if enc == RAW:
        return bytes(buf[start:end])
    return str(int.from_bytes(buf[start:end], "little", signed=True)).encode()


def skip_item(buf: bytearray, pos: int, kind: Kind) -> int:
    """The end of one item of `kind` at `pos` (beyond the buffer only for a big string)."""
    if kind == STRING:
        return skip_string(buf, pos)
    if isinstance(kind, int):
        if pos + kind > len(buf):
            raise Short
        return pos + kind
    if kind == LENGTH:
        return read_len(buf, pos)[1]
    if kind == OLD_DOUBLE:
        if pos >= len(buf):
            raise Short
        n = buf[pos]
        end = pos + 1 + (n if n < 253 else 0)
        if end > len(buf):
            raise Short
        return end
    if kind == CONTAINER:
        container, end = read_len(buf, pos)
        if container not in (1, 2):  # QUICKLIST_NODE_CONTAINER_PLAIN, _PACKED
            raise Malformed(f"quicklist node container {container} (not 1 or 2)", pos)
        return end
    enc, start, end = string_span(buf, pos)  # NODE_KEY
    if enc != RAW or end - start != 16:
        raise Malformed("a stream node key that is not a 16-byte stream ID", pos)
    if end > len(buf):
        raise Short
    return end


def skip_elements(buf: bytearray, pos: int, count: int, layout: Layout) -> tuple[int, int]:
    """Steps over up to `count` whole elements that lie in the buffer: (end, how many).

    The fast path for collections; it stops before an element that is not all there or
    holds a string to be skipped by count, which the walker then takes item by item."""
    size = len(buf)
    done = 0
    try:
        while done < count:
            p = pos
            for kind in layout:
                p = skip_item(buf, p, kind)
            if p > size:
                break
            pos = p
            done += 1
    except Short:
        pass
    return pos, done


def lzf_decompress(data: bytes, size: int, *, head: bool = False) -> bytes:
    """LZF (liblzf's lzf_decompress) of a key name or AUX field; ValueError if corrupt.

    `head`: `data` is only the start of the compressed bytes; give the first `size`
    bytes of the output (fewer if `data` ends first). Literal runs and non-overlapping
    back references are copied as slices; only an overlapping reference (a run
    repeating its last bytes) goes byte by byte."""
    out = bytearray()
    i, n = 0, len(data)
    try:
        while i < n and not (head and len(out) >= size):
            ctrl = data[i]
            i += 1
            if ctrl < 32:
                if i + ctrl + 1 > n and not head:
                    raise ValueError("literal run past the end")
                out += data[i : i + ctrl + 1]
                i += ctrl + 1
                continue
            length = ctrl >> 5
            if length == 7:
                length += data[i]
                i += 1
            ref = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
            i += 1
            length += 2
            if ref < 0:
                raise ValueError("back reference before the start")
            if ref + length <= len(out):
                out += out[ref : ref + length]
            else:
                for k in range(ref, ref + length):
                    out.append(out[k])
    except IndexError:
        if not head:
            raise ValueError("back reference past the end") from None
    if head:
        return bytes(out[:size])
    if len(out) != size:
        raise ValueError(f"{len(out)} bytes, the header says {size}")
    return bytes(out)
