"""A chunked AES-256-GCM file format for call recordings.

A sealed file is a fixed header followed by the plaintext in 64 KiB chunks, each
encrypted on its own, so a byte range can be served by decrypting only the chunks that
cover it.

Layout (big-endian)::

    header  magic "HLREC1" | version u8 | chunk size u32 | plaintext length u64
            | nonce prefix (8 random bytes)
    chunk i AES-GCM(key, nonce = prefix | i as u32, plaintext[i*C:(i+1)*C]) + 16-byte tag

There is always at least one chunk, so even an empty recording is authenticated. The
associated data of chunk ``i`` is ``header | i as u32 | final flag u8 | caller aad``:

* the header is authenticated, so its chunk size and length cannot be altered;
* the index stops chunks being reordered or swapped;
* the final flag, together with the authenticated length, stops truncation at a chunk
  boundary and extension;
* the caller's ``aad`` (the recording's database id) binds the file to its row, so a
  file copied over another recording's file will not open.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"HLREC1"
VERSION = 1
CHUNK_SIZE = 64 * 1024
# A bound on the chunk size a header may claim, so a forged header cannot make a reader
# allocate an arbitrary amount before authentication fails.
MAX_CHUNK_SIZE = 16 * 1024 * 1024
KEY_PURPOSE = "recordings-v1"

_HEADER = struct.Struct(">6sBIQ8s")
HEADER_SIZE = _HEADER.size
_TAG = 16
_CHUNK_AAD = struct.Struct(">IB")
_MAX_CHUNKS = 1 << 32  # the chunk index is four bytes of the nonce


class SealedError(Exception):
    """A sealed recording is not what it claims to be: bad magic or version, wrong key or
    associated data, tampered, truncated or extended."""


@dataclass(frozen=True)
class SealedInfo:
    """What :func:`seal_file` wrote. ``sha256`` is the hex digest of the plaintext."""

    plaintext_size: int
    ciphertext_size: int
    sha256: str


def recording_key(secret: bytes | str) -> bytes:
    """The 32-byte recording key, derived from the project secret."""
    return file_key(secret, KEY_PURPOSE)


def file_key(secret: bytes | str, purpose: str) -> bytes:
    """A 32-byte key for sealed files of one ``purpose``, derived from the project secret.

    Follows :class:`hotline.vault.Sealer`: HKDF-SHA256, no salt, ``info`` of
    ``hotline:<purpose>``, so each purpose's key is independent of the identity and
    message keys derived from the same secret. A ``str`` secret is taken as UTF-8.
    """
    raw = secret.encode() if isinstance(secret, str) else secret
    if not raw:
        raise ValueError("the project secret is empty")
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"hotline:{purpose}".encode()
    ).derive(raw)


def _aead(key: bytes) -> AESGCM:
    if len(key) != 32:
        raise ValueError("a recording key is 32 bytes (AES-256)")
    return AESGCM(key)


def _chunk_count(plaintext_size: int, chunk_size: int) -> int:
    return max(1, -(-plaintext_size // chunk_size))


def sealed_size(plaintext_size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """The exact size of a sealed file holding ``plaintext_size`` bytes."""
    return HEADER_SIZE + plaintext_size + _TAG * _chunk_count(plaintext_size, chunk_size)


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def _chunk_aad(header: bytes, index: int, final: bool, aad: bytes) -> bytes:
    # Fixed-length fields first and the caller's aad last keeps the encoding unambiguous.
    return header + _CHUNK_AAD.pack(index, 1 if final else 0) + aad


def _read_exactly(src: BinaryIO, size: int) -> bytes:
    data = src.read(size)
    if len(data) != size:
        raise SealedError("the source file changed while it was being sealed")
    return data


def seal_file(
    src: Path, dst: Path, key: bytes, *, aad: bytes, chunk_size: int = CHUNK_SIZE
) -> SealedInfo:
    """Encrypt ``src`` into ``dst``, streaming one chunk at a time.

    ``dst`` appears atomically, mode 0600: it is written to a temporary file in the same
    directory, fsynced and renamed over ``dst``. ``src`` is left in place (see
    :func:`seal_and_remove`). ``chunk_size`` exists for tests; keep the default.
    """
    if dst.exists() and src.samefile(dst):
        # Replacing the source with its own ciphertext, then seal_and_remove unlinking
        # "the source", would lose the recording.
        raise ValueError("src and dst are the same file")
    with open(src, "rb") as source:
        # The length goes into the authenticated header, so it must be known before the
        # first chunk is encrypted; a source that grows or shrinks meanwhile is an error.
        plaintext_size = os.fstat(source.fileno()).st_size
        return seal_stream(source, plaintext_size, dst, key, aad=aad, chunk_size=chunk_size)


def seal_bytes(data: bytes, dst: Path, key: bytes, *, aad: bytes) -> SealedInfo:
    """Seal ``data`` held in memory (an email attachment): no plaintext touches the disk."""
    return seal_stream(io.BytesIO(data), len(data), dst, key, aad=aad)


def seal_stream(
    source: BinaryIO,
    plaintext_size: int,
    dst: Path,
    key: bytes,
    *,
    aad: bytes,
    chunk_size: int = CHUNK_SIZE,
) -> SealedInfo:
    """Encrypt exactly ``plaintext_size`` bytes of ``source`` into ``dst`` (see seal_file)."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}")
    aead = _aead(key)
    count = _chunk_count(plaintext_size, chunk_size)
    if count > _MAX_CHUNKS:
        raise ValueError("the recording is too large for this chunk size")
    prefix = os.urandom(8)
    header = _HEADER.pack(MAGIC, VERSION, chunk_size, plaintext_size, prefix)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(header)
            for index in range(count):
                final = index == count - 1
                size = plaintext_size - index * chunk_size if final else chunk_size
                plain = _read_exactly(source, size)
                digest.update(plain)
                out.write(
                    aead.encrypt(
                        _nonce(prefix, index), plain, _chunk_aad(header, index, final, aad)
                    )
                )
            if source.read(1):
                raise SealedError("the source file changed while it was being sealed")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)
    return SealedInfo(plaintext_size, sealed_size(plaintext_size, chunk_size), digest.hexdigest())


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def seal_and_remove(src: Path, dst: Path, key: bytes, aad: bytes) -> SealedInfo:
    """Seal ``src`` into ``dst``, then delete ``src``. The plaintext is not overwritten."""
    info = seal_file(src, dst, key, aad=aad)
    src.unlink()
    return info


class SealedReader:
    """Random-access reads of a sealed recording.

    Holds the file open; close it (or use it as a context manager) when done. Reads use
    ``os.pread``, so one reader may serve several threads at once.
    """

    def __init__(
        self,
        file: BinaryIO,
        aead: AESGCM,
        header: bytes,
        chunk_size: int,
        size: int,
        prefix: bytes,
        aad: bytes,
    ) -> None:
        """Use :meth:`open`."""
        self._file = file
        self._aead = aead
        self._header = header
        self._chunk_size = chunk_size
        self._size = size
        self._prefix = prefix
        self._aad = aad
        self._count = _chunk_count(size, chunk_size)

    @classmethod
    def open(cls, path: Path, key: bytes, *, aad: bytes) -> Self:
        """Open and check a sealed file.

        Besides the header, the file size must match the header exactly and the final
        chunk must decrypt, so a wrong key or aad, a forged header or a truncated or
        extended file fail here, not halfway through a response.
        """
        aead = _aead(key)
        file = open(path, "rb")  # owned by the reader from here on
        try:
            header = file.read(HEADER_SIZE)
            if len(header) != HEADER_SIZE or not header.startswith(MAGIC):
                raise SealedError(f"{path.name}: not a sealed recording")
            _, version, chunk_size, size, prefix = _HEADER.unpack(header)
            if version != VERSION:
                raise SealedError(f"{path.name}: unsupported sealed format version {version}")
            if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
                raise SealedError(f"{path.name}: corrupt header")
            actual = os.fstat(file.fileno()).st_size
            if actual != sealed_size(size, chunk_size):
                raise SealedError(f"{path.name}: truncated or extended")
            reader = cls(file, aead, header, chunk_size, size, prefix, aad)
            reader._chunk(reader._count - 1)
        except BaseException:
            file.close()
            raise
        return reader

    @property
    def size(self) -> int:
        """The plaintext length in bytes."""
        return self._size

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def read(self, start: int, end_inclusive: int) -> bytes:
        """The plaintext bytes ``start..end_inclusive``; both ends must lie in the file."""
        self._check_range(start, end_inclusive)
        return b"".join(self._pieces(start, end_inclusive + 1))

    def iter_range(self, start: int, end_inclusive: int, block: int = 65536) -> Iterator[bytes]:
        """The plaintext bytes ``start..end_inclusive`` in blocks of ``block`` bytes (the
        last may be shorter). Each chunk is decrypted once, when first needed."""
        self._check_range(start, end_inclusive)
        if block < 1:
            raise ValueError("block must be positive")
        return self._blocks(start, end_inclusive + 1, block)

    def _check_range(self, start: int, end_inclusive: int) -> None:
        if not 0 <= start <= end_inclusive < self._size:
            raise ValueError(
                f"range {start}-{end_inclusive} is outside a recording of {self._size} bytes"
            )

    def _blocks(self, start: int, end: int, block: int) -> Iterator[bytes]:
        pending = bytearray()
        for piece in self._pieces(start, end):
            pending += piece
            while len(pending) >= block:
                yield bytes(pending[:block])
                del pending[:block]
        if pending:
            yield bytes(pending)

    def _pieces(self, start: int, end: int) -> Iterator[bytes]:
        """The covering chunks, decrypted and trimmed to ``start..end`` (exclusive)."""
        position = start
        while position < end:
            index = position // self._chunk_size
            base = index * self._chunk_size
            plain = self._chunk(index)
            piece = plain[position - base : min(end, base + len(plain)) - base]
            position += len(piece)
            yield piece

    def _chunk(self, index: int) -> bytes:
        final = index == self._count - 1
        length = self._size - index * self._chunk_size if final else self._chunk_size
        offset = HEADER_SIZE + index * (self._chunk_size + _TAG)
        data = os.pread(self._file.fileno(), length + _TAG, offset)
        if len(data) != length + _TAG:
            raise SealedError("sealed recording is truncated")
        try:
            return self._aead.decrypt(
                _nonce(self._prefix, index),
                data,
                _chunk_aad(self._header, index, final, self._aad),
            )
        except InvalidTag:
            raise SealedError(
                "sealed recording does not authenticate: wrong key or id, or tampered"
            ) from None
