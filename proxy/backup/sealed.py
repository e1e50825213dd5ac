"""The sealed backup format: AES-256-GCM in authenticated segments (sans-IO, no asyncio).

A backup is encrypted while it streams, so it is cut into segments, each sealed on its
own; the construction is the STREAM one (Hoang, Reyhanitabar, Rogaway, Vizár 2015) that
age and Tink use. Layout (`grbk1`):

    header   b"GRBK\\x01" | key id (8) | data key wrapped by the master key (40,
             RFC 3394 key wrap) | nonce prefix (7)
    segment  length (4, big-endian) | AES-256-GCM(ciphertext + 16-byte tag)   ... repeated

Each backup has its own random data key; only its wrapped form is stored, so the master
key (from the environment, `[backup] key_env`) never touches a file and can be rotated by
re-wrapping. Segment i's nonce is prefix | i (4 bytes) | last (1 byte: 1 on the final
segment only), and every segment authenticates the whole header as associated data. So
a flipped bit fails its segment's tag; segments swapped or copied from another backup
fail (wrong index or key); a file cut at a segment boundary has no final segment and is
refused at the end. A reader learns nothing it may trust until a segment's tag checks,
and the caller treats the whole backup as bad until `Opener.finish` returns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from proxy.errors import GeoredisError

MAGIC = b"GRBK\x01"
FORMAT = "grbk1"
SEGMENT = 1 << 20  # plaintext bytes per segment: small enough to stream, large enough to be cheap
_KEY_ID = 8
_WRAPPED = 40
_PREFIX = 7
HEADER_SIZE = len(MAGIC) + _KEY_ID + _WRAPPED + _PREFIX
_TAG = 16
_MAX_SEGMENT = 16 << 20  # a length field above this is damage, not a segment


class SealError(GeoredisError):
    """A sealed backup that does not open: wrong key, damage, truncation, reordering."""


class MasterKey:
    """The 32-byte key that wraps each backup's data key; `id` names it in manifests."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a backup master key is 32 bytes (64 hex digits, or base64)")
        self._key = key
        self.id = hashlib.sha256(b"georedis backup key id\0" + key).digest()[:_KEY_ID]

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        """The key as an environment variable holds it: 64 hex digits, or base64."""
        text = text.strip()
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("a backup master key is 64 hex digits or base64 of 32 bytes") from None
        return cls(raw)

    def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self._key, data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._key, wrapped)
        except InvalidUnwrap:
            raise SealError("the backup's key does not open with this master key") from None

    def mac(self, data: bytes) -> str:
        """HMAC-SHA256 of `data` under a key derived from this one: manifests are plain
        JSON beside the sealed file, and this is what makes them tamper-evident."""
        derived = hashlib.sha256(b"georedis manifest mac\0" + self._key).digest()
        return hmac.new(derived, data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never the key itself, in a log or a traceback
        return f"MasterKey(id={self.id.hex()})"


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if index >= 1 << 32:
        raise SealError("backup too large for one sealed stream (2^32 segments)")
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class Sealer:
    """Plaintext in, sealed bytes out; `header` first, then what `seal`/`finish` return."""

    def __init__(self, master: MasterKey, segment: int = SEGMENT) -> None:
        data_key = AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(data_key)
        self._prefix = os.urandom(_PREFIX)
        self.header = MAGIC + master.id + master.wrap(data_key) + self._prefix
        self._segment = segment
        self._buf = bytearray()
        self._index = 0

    def seal(self, data: bytes) -> bytes:
        """Sealed segments for every full segment buffered so far (maybe b"")."""
        self._buf += data
        if len(self._buf) < self._segment:
            return b""
        out = []
        view = memoryview(self._buf)
        at = 0
        while len(self._buf) - at >= self._segment:
            out.append(self._one(bytes(view[at : at + self._segment]), last=False))
            at += self._segment
        view.release()
        del self._buf[:at]
        return b"".join(out)

    def finish(self) -> bytes:
        """The final segment (maybe empty plaintext): without it a reader refuses."""
        last = self._one(bytes(self._buf), last=True)
        self._buf.clear()
        return last

    def _one(self, plain: bytes, last: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), plain, self.header)
        self._index += 1
        return struct.pack(">I", len(sealed)) + sealed


class Opener:
    """Sealed bytes in, plaintext out; `finish` says whether the stream was whole."""

    def __init__(self, master: MasterKey) -> None:
        self._master = master
        self._aead: AESGCM | None = None
        self._header = b""
        self._prefix = b""
        self._buf = bytearray()
        self._index = 0
        self._done = False
        self.consumed = 0

    def feed(self, data: bytes) -> bytes:
        """The plaintext of every segment completed by `data`; SealError on damage."""
        self._buf += data
        self.consumed += len(data)
        if self._aead is None and not self._open_header():
            return b""
        out = []
        while (plain := self._next_segment()) is not None:
            out.append(plain)
        return b"".join(out)

    def finish(self) -> None:
        if self._aead is None:
            raise SealError("not a georedis backup, or cut short in its header")
        if not self._done:
            raise SealError("backup cut short: its final segment is missing")

    def _open_header(self) -> bool:
        if len(self._buf) < HEADER_SIZE:
            if not MAGIC.startswith(bytes(self._buf[: len(MAGIC)])):
                raise SealError("not a georedis backup (bad magic)")
            return False
        header = bytes(self._buf[:HEADER_SIZE])
        if not header.startswith(MAGIC):
            raise SealError("not a georedis backup (bad magic)")
        key_id = header[len(MAGIC) : len(MAGIC) + _KEY_ID]
        if key_id != self._master.id:
            mine = self._master.id.hex()
            raise SealError(f"sealed with master key {key_id.hex()}, not with this one ({mine})")
        wrapped = header[len(MAGIC) + _KEY_ID : len(MAGIC) + _KEY_ID + _WRAPPED]
        self._aead = AESGCM(self._master.unwrap(wrapped))
        self._prefix = header[-_PREFIX:]
        self._header = header
        del self._buf[:HEADER_SIZE]
        return True

    def _next_segment(self) -> bytes | None:
        if len(self._buf) < 4:
            if self._buf and self._done:
                raise SealError("bytes after the final segment")
            return None
        (size,) = struct.unpack_from(">I", self._buf)
        if self._done:
            raise SealError("bytes after the final segment")
        if size < _TAG or size > _MAX_SEGMENT:
            raise SealError(f"damaged segment {self._index} (length {size})")
        if len(self._buf) < 4 + size:
            return None
        sealed = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        return self._open(sealed)

    def _open(self, sealed: bytes) -> bytes:
        assert self._aead is not None
        for last in (False, True):
            try:
                plain = self._aead.decrypt(_nonce(self._prefix, self._index, last), sealed,
                                           self._header)  # fmt: skip
            except InvalidTag:
                continue
            self._index += 1
            self._done = last
            return plain
        raise SealError(f"segment {self._index} fails its check: damaged, reordered or foreign")
