"""Serve a sealed recording over HTTP with single byte ranges (RFC 9110 §14, was RFC 7233).

Browsers' ``<audio>`` elements seek with ``Range`` requests; each one decrypts only the
chunks it needs, block by block in a worker thread so a long recording never stalls the
event loop. Multi-range and malformed ``Range`` headers are ignored, as the RFC allows:
the answer is then the whole recording with 200.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

from aiohttp import hdrs, web

from recordings.sealed import SealedReader

BLOCK = 64 * 1024

_RANGE = re.compile(r"bytes=[ \t]*([0-9]*)-([0-9]*)[ \t]*", re.IGNORECASE | re.ASCII)


class Unsatisfiable(Exception):
    """A well-formed range that lies wholly outside the recording."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(first, last)`` byte range asked for, clamped to ``size``.

    ``None`` means "send everything": no header, a malformed one, or several ranges.
    Raises :class:`Unsatisfiable` for a valid range that selects no byte of the file.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:  # includes "bytes=0-1,5-6": several ranges are not supported
        return None
    first_text, last_text = match.groups()
    try:
        first = int(first_text) if first_text else None
        last = int(last_text) if last_text else None
    except ValueError:  # more digits than int() accepts: not a sensible request
        return None
    if first is None:
        if last is None:  # "bytes=-"
            return None
        if last == 0 or size == 0:  # suffix of zero bytes, or nothing to take it from
            raise Unsatisfiable
        return max(0, size - last), size - 1
    if last is not None and last < first:  # syntactically invalid: ignore the header
        return None
    if first >= size:
        raise Unsatisfiable
    return first, size - 1 if last is None else min(last, size - 1)


def _next_block(blocks: Iterator[bytes]) -> bytes | None:
    return next(blocks, None)


async def serve(
    request: web.Request,
    reader: SealedReader,
    content_type: str,
    *,
    disposition: str = "inline",
) -> web.StreamResponse:
    """Answer ``request`` (GET or HEAD) with the recording behind ``reader``.

    200 with the whole body without a usable ``Range``, 206 with ``Content-Range`` for a
    single satisfiable range, 416 with ``Content-Range: bytes */size`` otherwise. The
    caller owns ``reader`` and closes it after this returns.
    """
    size = reader.size
    response = web.StreamResponse()
    response.headers[hdrs.ACCEPT_RANGES] = "bytes"
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The response has no validator (no ETag, no Last-Modified), so an If-Range can never
    # match: RFC 9110 §13.1.5 says to ignore Range and send the whole representation.
    range_header = None if hdrs.IF_RANGE in request.headers else request.headers.get(hdrs.RANGE)
    try:
        wanted = parse_range(range_header, size)
    except Unsatisfiable:
        response.set_status(416)
        response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        response.content_length = 0
        await response.prepare(request)
        await response.write_eof()
        return response

    if wanted is None:
        first, last = 0, size - 1
    else:
        first, last = wanted
        response.set_status(206)
        response.headers[hdrs.CONTENT_RANGE] = f"bytes {first}-{last}/{size}"
    response.headers[hdrs.CONTENT_TYPE] = content_type
    response.headers[hdrs.CONTENT_DISPOSITION] = disposition
    response.content_length = last - first + 1
    await response.prepare(request)
    if request.method != hdrs.METH_HEAD and size > 0:
        blocks = reader.iter_range(first, last, BLOCK)
        while (block := await asyncio.to_thread(_next_block, blocks)) is not None:
            await response.write(block)
    await response.write_eof()
    return response
