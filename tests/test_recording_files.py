"""Sealed recordings: the chunked AES-GCM file format and HTTP range playback.

Real files in a temporary directory, real crypto, a real aiohttp server; nothing mocked.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordings.http import parse_range, serve
from recordings.sealed import (
    CHUNK_SIZE,
    HEADER_SIZE,
    SealedError,
    SealedReader,
    recording_key,
    seal_and_remove,
    seal_file,
    sealed_size,
)

KEY = recording_key(bytes(range(32)))
AAD = b"recording-0001"
C = CHUNK_SIZE
TAG = 16
SIZES = [0, 1, C - 1, C, C + 1, 3 * C, 3 * C + 12_345]

Seal = Callable[..., Path]


@pytest.fixture
def seal(tmp_path: Path) -> Seal:
    """Seal ``data`` into a fresh file in ``tmp_path`` and return its path."""
    counter = iter(range(1_000_000))

    def make(data: bytes, *, aad: bytes = AAD, key: bytes = KEY, chunk_size: int = C) -> Path:
        n = next(counter)
        src = tmp_path / f"plain-{n}.wav"
        src.write_bytes(data)
        dst = tmp_path / f"sealed-{n}.hlrec"
        seal_file(src, dst, key, aad=aad, chunk_size=chunk_size)
        return dst

    return make


def read_all(path: Path, *, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    with SealedReader.open(path, key, aad=aad) as reader:
        return reader.read(0, reader.size - 1) if reader.size else b""


def chunk_offset(index: int, chunk_size: int = C) -> int:
    return HEADER_SIZE + index * (chunk_size + TAG)


# --- keys -----------------------------------------------------------------------------


def test_recording_key_is_derived_per_secret() -> None:
    assert len(KEY) == 32
    assert recording_key(bytes(range(32))) == KEY
    assert recording_key(bytes(32)) != KEY
    assert recording_key("s3cret") == recording_key(b"s3cret")
    assert KEY != bytes(range(32))  # derived, never the secret itself
    with pytest.raises(ValueError, match="empty"):
        recording_key(b"")


def test_a_key_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="32 bytes"):
        seal_file(src, tmp_path / "out", KEY[:16], aad=AAD)


# --- round trip -----------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    src = tmp_path / "call.wav"
    src.write_bytes(data)
    dst = tmp_path / "call.hlrec"

    info = seal_file(src, dst, KEY, aad=AAD)

    assert info.plaintext_size == size
    assert info.ciphertext_size == dst.stat().st_size == sealed_size(size)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert src.read_bytes() == data  # sealing alone leaves the source alone
    with SealedReader.open(dst, KEY, aad=AAD) as reader:
        assert reader.size == size
        if size:
            assert reader.read(0, size - 1) == data
            assert b"".join(reader.iter_range(0, size - 1)) == data


def test_an_empty_recording_still_has_an_authenticated_chunk(seal: Seal) -> None:
    path = seal(b"")
    assert path.stat().st_size == HEADER_SIZE + TAG
    with SealedReader.open(path, KEY, aad=AAD) as reader:
        assert reader.size == 0
        with pytest.raises(ValueError):
            reader.read(0, 0)
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=b"another recording")


def test_seal_and_remove_deletes_the_plaintext(tmp_path: Path) -> None:
    data = os.urandom(C + 7)
    src = tmp_path / "call.wav"
    src.write_bytes(data)
    dst = tmp_path / "call.hlrec"

    info = seal_and_remove(src, dst, KEY, AAD)

    assert not src.exists()
    assert info.plaintext_size == len(data)
    assert read_all(dst) == data


# --- ranges ---------------------------------------------------------------------------

BIG = 3 * C + 12_345


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path]:
    directory = tmp_path_factory.mktemp("big")
    data = os.urandom(BIG)
    (directory / "plain").write_bytes(data)
    seal_file(directory / "plain", directory / "sealed", KEY, aad=AAD)
    return data, directory / "sealed"


EDGES = [
    (0, 0),
    (0, 1),
    (1, 1),
    (0, C - 1),  # exactly the first chunk
    (0, C),  # one byte into the second
    (C - 1, C - 1),  # last byte of a chunk
    (C, C),  # first byte of a chunk
    (C - 1, C),  # straddles a boundary by one byte each side
    (C, 2 * C - 1),  # exactly the second chunk
    (C - 1, 2 * C),  # three chunks, one byte at each end
    (1, BIG - 2),
    (3 * C, BIG - 1),  # exactly the short last chunk
    (3 * C - 1, 3 * C),
    (BIG - 1, BIG - 1),  # last byte
    (0, BIG - 1),  # everything
]


@pytest.mark.parametrize(("start", "end"), EDGES)
def test_range_edges(big_file: tuple[bytes, Path], start: int, end: int) -> None:
    data, path = big_file
    with SealedReader.open(path, KEY, aad=AAD) as reader:
        assert reader.read(start, end) == data[start : end + 1]
        for block in (1, 1000, C - 1, C, C + 1, 10 * C):
            if block == 1 and end - start > 5000:
                continue
            blocks = list(reader.iter_range(start, end, block))
            assert b"".join(blocks) == data[start : end + 1]
            assert all(len(b) == block for b in blocks[:-1])
            assert 0 < len(blocks[-1]) <= block


@pytest.mark.parametrize(("start", "end"), [(-1, 0), (5, 4), (0, BIG), (BIG, BIG)])
def test_ranges_outside_the_file_are_refused(
    big_file: tuple[bytes, Path], start: int, end: int
) -> None:
    with SealedReader.open(big_file[1], KEY, aad=AAD) as reader:
        with pytest.raises(ValueError, match="outside"):
            reader.read(start, end)
        with pytest.raises(ValueError, match="outside"):
            reader.iter_range(start, end)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_range_matches_the_plaintext_slice(
    big_file: tuple[bytes, Path], data: st.DataObject
) -> None:
    plain, path = big_file
    start = data.draw(st.integers(0, BIG - 1), label="start")
    end = data.draw(st.integers(start, BIG - 1), label="end")
    block = data.draw(st.integers(1024, 4 * C), label="block")
    with SealedReader.open(path, KEY, aad=AAD) as reader:
        assert reader.read(start, end) == plain[start : end + 1]
        assert b"".join(reader.iter_range(start, end, block)) == plain[start : end + 1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plain=st.binary(min_size=1, max_size=300),
    chunk_size=st.integers(1, 40),
    data=st.data(),
)
def test_any_range_with_small_chunks(plain: bytes, chunk_size: int, data: st.DataObject) -> None:
    """Tiny chunks put many chunk boundaries inside small files."""
    start = data.draw(st.integers(0, len(plain) - 1), label="start")
    end = data.draw(st.integers(start, len(plain) - 1), label="end")
    block = data.draw(st.integers(1, 50), label="block")
    with tempfile.TemporaryDirectory() as directory:
        src, dst = Path(directory) / "plain", Path(directory) / "sealed"
        src.write_bytes(plain)
        info = seal_file(src, dst, KEY, aad=AAD, chunk_size=chunk_size)
        assert info.ciphertext_size == dst.stat().st_size
        with SealedReader.open(dst, KEY, aad=AAD) as reader:
            assert reader.read(start, end) == plain[start : end + 1]
            blocks = list(reader.iter_range(start, end, block))
            assert b"".join(blocks) == plain[start : end + 1]
            assert all(len(b) == block for b in blocks[:-1])


# --- what a sealed file refuses -------------------------------------------------------


def test_wrong_key_is_refused(seal: Seal) -> None:
    path = seal(os.urandom(2 * C + 1))
    with pytest.raises(SealedError):
        SealedReader.open(path, recording_key(b"another secret"), aad=AAD)


def test_wrong_aad_is_refused(seal: Seal) -> None:
    """A file copied over another recording's file does not open under that record's id."""
    path = seal(os.urandom(2 * C + 1))
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=b"recording-0002")
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=AAD + b"\x00")


@pytest.mark.parametrize("chunk", [0, 1, 2])
@pytest.mark.parametrize("where", ["first", "middle", "tag"])
def test_a_flipped_byte_in_any_chunk_is_detected(seal: Seal, chunk: int, where: str) -> None:
    path = seal(os.urandom(2 * C + 100))
    length = 100 if chunk == 2 else C
    at = chunk_offset(chunk) + {"first": 0, "middle": length // 2, "tag": length + TAG - 1}[where]
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0x01
    path.write_bytes(bytes(blob))
    with pytest.raises(SealedError):
        # The last chunk is checked on open; the others when they are read.
        with SealedReader.open(path, KEY, aad=AAD) as reader:
            reader.read(0, reader.size - 1)


def test_a_tampered_chunk_fails_only_reads_that_touch_it(seal: Seal) -> None:
    data = os.urandom(3 * C)
    path = seal(data)
    blob = bytearray(path.read_bytes())
    blob[chunk_offset(1) + 5] ^= 0x80
    path.write_bytes(bytes(blob))
    with SealedReader.open(path, KEY, aad=AAD) as reader:
        assert reader.read(0, C - 1) == data[:C]
        assert reader.read(2 * C, 3 * C - 1) == data[2 * C :]
        with pytest.raises(SealedError):
            reader.read(C - 1, C)
        with pytest.raises(SealedError):
            b"".join(reader.iter_range(0, 3 * C - 1))


@pytest.mark.parametrize(
    "field",
    [
        (0, b"XLREC1"),  # magic
        (6, b"\x02"),  # version
        (7, (C // 2).to_bytes(4, "big")),  # chunk size
        (11, (3 * C - 1).to_bytes(8, "big")),  # plaintext length
        (19, b"\x00" * 8),  # nonce prefix
    ],
)
def test_a_tampered_header_is_refused(seal: Seal, field: tuple[int, bytes]) -> None:
    offset, value = field
    path = seal(os.urandom(3 * C))
    blob = bytearray(path.read_bytes())
    blob[offset : offset + len(value)] = value
    path.write_bytes(bytes(blob))
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=AAD)


def test_swapped_chunks_are_refused(seal: Seal) -> None:
    path = seal(os.urandom(3 * C))
    blob = path.read_bytes()
    a, b, c = (blob[chunk_offset(i) : chunk_offset(i + 1)] for i in range(3))
    path.write_bytes(blob[:HEADER_SIZE] + b + a + c)
    with SealedReader.open(path, KEY, aad=AAD) as reader, pytest.raises(SealedError):
        reader.read(0, 0)
    path.write_bytes(blob[:HEADER_SIZE] + a + c + b)  # the final chunk moved
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=AAD)


def test_a_chunk_from_another_file_is_refused(seal: Seal) -> None:
    """Same key, same id, same position: the random nonce prefix still tells them apart."""
    first, second = seal(os.urandom(2 * C)), seal(os.urandom(2 * C))
    blob, other = first.read_bytes(), second.read_bytes()
    first.write_bytes(
        blob[: chunk_offset(0)] + other[chunk_offset(0) : chunk_offset(1)] + blob[chunk_offset(1) :]
    )
    with SealedReader.open(first, KEY, aad=AAD) as reader, pytest.raises(SealedError):
        reader.read(0, 0)


@pytest.mark.parametrize(
    "cut",
    [
        0,
        3,  # inside the magic
        HEADER_SIZE - 1,
        HEADER_SIZE,
        HEADER_SIZE + 1,
        chunk_offset(1),  # a clean chunk boundary
        chunk_offset(2) - 1,
        -1,  # the last byte of the last tag
    ],
)
def test_a_truncated_file_is_refused(seal: Seal, cut: int) -> None:
    path = seal(os.urandom(2 * C + 10))
    blob = path.read_bytes()
    path.write_bytes(blob[:cut])
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=AAD)


def test_truncation_at_a_chunk_boundary_with_a_forged_length_is_refused(seal: Seal) -> None:
    """Drop the last chunk and rewrite the length so the size check passes."""
    path = seal(os.urandom(2 * C + 10))
    blob = bytearray(path.read_bytes()[: chunk_offset(2)])
    blob[11:19] = (2 * C).to_bytes(8, "big")
    path.write_bytes(bytes(blob))
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=AAD)


@pytest.mark.parametrize("extra", [b"\x00", b"x" * TAG, "copy-of-last-chunk"])
def test_an_extended_file_is_refused(seal: Seal, extra: bytes | str) -> None:
    path = seal(os.urandom(2 * C + 10))
    blob = path.read_bytes()
    tail = blob[chunk_offset(2) :] if isinstance(extra, str) else extra
    path.write_bytes(blob + tail)
    with pytest.raises(SealedError):
        SealedReader.open(path, KEY, aad=AAD)


def test_a_file_reads_truncated_after_opening_fail_cleanly(seal: Seal) -> None:
    path = seal(os.urandom(3 * C))
    with SealedReader.open(path, KEY, aad=AAD) as reader:
        os.truncate(path, chunk_offset(1) + 10)
        assert len(reader.read(0, C - 1)) == C
        with pytest.raises(SealedError, match="truncated"):
            reader.read(C, C)


def test_not_a_sealed_file(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    path.write_bytes(b"RIFF" + os.urandom(1000))
    with pytest.raises(SealedError, match="not a sealed recording"):
        SealedReader.open(path, KEY, aad=AAD)


# --- the file on disk -----------------------------------------------------------------


def test_the_sealed_file_is_private(seal: Seal) -> None:
    old = os.umask(0)
    try:
        path = seal(b"secret voice")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_ciphertext_shows_no_plaintext(seal: Seal) -> None:
    marker = b"REPORTER-SAYS-THE-MAYOR-TOOK-A-BRIBE "
    plain = marker * (3 * C // len(marker)) + os.urandom(C)
    blob = seal(plain).read_bytes()
    assert marker[:12] not in blob
    for at in range(0, len(plain) - 32, C // 2):
        assert plain[at : at + 32] not in blob
    # Equal plaintext chunks give unrelated ciphertext chunks.
    assert (
        blob[chunk_offset(0) : chunk_offset(0) + 64] != blob[chunk_offset(1) : chunk_offset(1) + 64]
    )


def test_sealing_replaces_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    src, dst = tmp_path / "call.wav", tmp_path / "call.hlrec"
    dst.write_bytes(b"an older version")
    src.write_bytes(os.urandom(C * 2))
    seal_file(src, dst, KEY, aad=AAD)
    assert read_all(dst) == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.hlrec", "call.wav"]


def test_sealing_a_file_onto_itself_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "call.wav"
    src.write_bytes(b"voice")
    with pytest.raises(ValueError, match="same file"):
        seal_and_remove(src, src, KEY, AAD)
    with pytest.raises(ValueError, match="same file"):
        seal_file(src, tmp_path / "." / "call.wav", KEY, aad=AAD)
    assert src.read_bytes() == b"voice"


def test_a_failed_seal_leaves_nothing_behind(tmp_path: Path) -> None:
    dst = tmp_path / "call.hlrec"
    with pytest.raises(FileNotFoundError):
        seal_file(tmp_path / "missing.wav", dst, KEY, aad=AAD)
    src = tmp_path / "call.wav"
    src.write_bytes(b"x")
    with pytest.raises(FileNotFoundError):
        seal_file(src, tmp_path / "no-such-dir" / "call.hlrec", KEY, aad=AAD)
    assert [p.name for p in tmp_path.iterdir()] == ["call.wav"]


# --- HTTP -----------------------------------------------------------------------------

HTTP_SIZE = 2 * C + 1000  # more than one 64 KiB block, and not a whole number of chunks


Http = tuple[TestClient[web.Request, web.Application], bytes]


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[Http]:
    data = os.urandom(HTTP_SIZE)
    files = {"call": data, "empty": b""}
    for name, content in files.items():
        (tmp_path / f"{name}.wav").write_bytes(content)
        seal_and_remove(tmp_path / f"{name}.wav", tmp_path / name, KEY, name.encode())

    async def play(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        reader = SealedReader.open(tmp_path / name, KEY, aad=name.encode())
        try:
            return await serve(request, reader, "audio/wav")
        finally:
            reader.close()

    app = web.Application()
    app.router.add_get("/recordings/{name}", play)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, data
    await client.close()


def assert_common_headers(headers: Mapping[str, str]) -> None:
    assert headers.get("Accept-Ranges") == "bytes"
    assert headers.get("Cache-Control") == "no-store"


async def test_http_without_range_sends_everything(http: Http) -> None:
    client, data = http
    resp = await client.get("/recordings/call")
    assert resp.status == 200
    assert await resp.read() == data
    assert resp.headers["Content-Length"] == str(HTTP_SIZE)
    assert resp.headers["Content-Type"] == "audio/wav"
    assert resp.headers["Content-Disposition"] == "inline"
    assert "Content-Range" not in resp.headers
    assert_common_headers(resp.headers)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-20", 10, 20),
        (f"bytes={C - 1}-{C}", C - 1, C),
        (f"bytes=5-{HTTP_SIZE + 500}", 5, HTTP_SIZE - 1),  # end clamped to the file
        (f"bytes={C + 3}-", C + 3, HTTP_SIZE - 1),
        (f"bytes={HTTP_SIZE - 1}-", HTTP_SIZE - 1, HTTP_SIZE - 1),
        ("bytes=0-", 0, HTTP_SIZE - 1),
        ("bytes=-1", HTTP_SIZE - 1, HTTP_SIZE - 1),
        ("bytes=-500", HTTP_SIZE - 500, HTTP_SIZE - 1),
        (f"bytes=-{HTTP_SIZE + 99}", 0, HTTP_SIZE - 1),  # suffix longer than the file
        ("BYTES=1-2", 1, 2),  # range units are case-insensitive
    ],
)
async def test_http_single_range(http: Http, header: str, first: int, last: int) -> None:
    client, data = http
    resp = await client.get("/recordings/call", headers={"Range": header})
    assert resp.status == 206
    assert await resp.read() == data[first : last + 1]
    assert resp.headers["Content-Range"] == f"bytes {first}-{last}/{HTTP_SIZE}"
    assert resp.headers["Content-Length"] == str(last - first + 1)
    assert resp.headers["Content-Type"] == "audio/wav"
    assert resp.headers["Content-Disposition"] == "inline"
    assert_common_headers(resp.headers)


@pytest.mark.parametrize(
    "header", [f"bytes={HTTP_SIZE}-", f"bytes={HTTP_SIZE + 10}-{HTTP_SIZE + 20}", "bytes=-0"]
)
async def test_http_unsatisfiable_range(http: Http, header: str) -> None:
    client, _ = http
    resp = await client.get("/recordings/call", headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{HTTP_SIZE}"
    assert await resp.read() == b""
    assert_common_headers(resp.headers)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=abc",
        "bytes=5-2",  # last before first: syntactically invalid
        "bytes=-",
        "bytes=",
        "items=0-1",
        "bytes 0-1",
        "bytes=0-1,5-6",  # several ranges: allowed to ignore
        "bytes=0-1, -5",
        "bytes=+1-2",
        "bytes=0x10-20",
        "bytes=١-٢",  # non-ASCII digits
        "bytes=0-" + "9" * 5000,  # more digits than int() takes
    ],
)
async def test_http_malformed_or_multiple_ranges_send_everything(http: Http, header: str) -> None:
    client, data = http
    resp = await client.get("/recordings/call", headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == data
    assert "Content-Range" not in resp.headers


async def test_http_if_range_without_a_validator_sends_everything(http: Http) -> None:
    client, data = http
    resp = await client.get(
        "/recordings/call", headers={"Range": "bytes=0-9", "If-Range": '"some-etag"'}
    )
    assert resp.status == 200
    assert await resp.read() == data


async def test_http_head(http: Http) -> None:
    client, _ = http
    resp = await client.head("/recordings/call")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(HTTP_SIZE)
    assert resp.headers["Content-Type"] == "audio/wav"
    assert await resp.read() == b""
    assert_common_headers(resp.headers)

    resp = await client.head("/recordings/call", headers={"Range": "bytes=-100"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {HTTP_SIZE - 100}-{HTTP_SIZE - 1}/{HTTP_SIZE}"
    assert resp.headers["Content-Length"] == "100"
    assert await resp.read() == b""


async def test_http_empty_recording(http: Http) -> None:
    client, _ = http
    resp = await client.get("/recordings/empty")
    assert resp.status == 200
    assert await resp.read() == b""
    assert resp.headers["Content-Length"] == "0"
    for header in ("bytes=0-", "bytes=-5"):
        resp = await client.get("/recordings/empty", headers={"Range": header})
        assert resp.status == 416
        assert resp.headers["Content-Range"] == "bytes */0"


def test_parse_range_examples() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes= 2-4 ", 10) == (2, 4)
    assert parse_range("bytes=7-", 10) == (7, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=4-2", 10) is None
