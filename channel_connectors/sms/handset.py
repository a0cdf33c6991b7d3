"""A fake mobile network for Kannel's fake SMSC: citizens' handsets, for tests and demos.

Kannel's ``smsc = fake`` listens on a TCP port and talks to one client in lines of
``sender receiver type data`` (the protocol of Kannel's ``fakesmsc`` test tool). This
module is that client, kept running as a child process next to bearerbox, with a small
local control socket (JSON lines) so several simulated handsets can share the one link:

* ``{"op": "subscribe", "number": "13800138000"}`` ("*" for every number): the SMS Kannel
  sends to that number arrive as ``{"op": "sms", "from", "to", "text", "parts"}``, with
  concatenated parts joined and UCS-2 decoded;
* ``{"op": "send", "from": ..., "to": ..., "text": ...}`` injects a citizen's SMS
  (GSM text as ``text``, anything else as ``ucs2``); answered ``{"op": "sent"}``.

Run it as ``python -m channel_connectors.sms.handset --smsc HOST:PORT --socket PATH``;
it prints ``ready`` once it is linked to bearerbox and listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

log = logging.getLogger(__name__)

_HEADER = re.compile(rb"^(\+?\d{1,20}) (\S+) (text|data|ucs-2|ucs2|udh) ?(.*)$", re.S)
_PRINTABLE = re.compile(r"^[ -~]*$")


@dataclass
class _Pending:
    sender: str
    receiver: str
    kind: str
    data: bytes


@dataclass
class _Parts:
    total: int
    got: dict[int, bytes] = field(default_factory=dict)
    ucs2: bool = False


def decode_body(data: bytes, kind: str) -> str:
    """The text of an MT message as the fake SMSC wrote it."""
    if kind in ("ucs-2", "ucs2"):
        return data.decode("utf-16-be", errors="replace")
    if kind == "text":
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    # Binary or concatenated parts carry no coding on this wire: Kannel's text is ASCII
    # or Latin-1 bytes, UCS-2 of Mandarin (and of the numbered lines) is not.
    printable = all(32 <= b < 127 or b in (9, 10, 13) for b in data)
    if not printable and len(data) % 2 == 0:
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-16-be")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def mo_line(sender: str, receiver: str, text: str) -> bytes:
    """One citizen SMS on the fake SMSC's wire."""
    if _PRINTABLE.match(text):
        return f"{sender} {receiver} text {text}\n".encode("ascii")
    payload = quote_from_bytes(text.encode("utf-16-be"), safe="")
    return f"{sender} {receiver} ucs2 {payload}\n".encode("ascii")


def _unquote(raw: bytes) -> bytes:
    """Kannel's URL encoding: ``+`` is a space (a literal plus is ``%2B``)."""
    return unquote_to_bytes(raw.decode("latin-1").replace("+", " "))


def _concat_info(udh: bytes) -> tuple[int, int, int] | None:
    """(reference, total, sequence) from a concatenation UDH, if it has one."""
    i = 1
    while i + 1 < len(udh):
        iei, length = udh[i], udh[i + 1]
        body = udh[i + 2 : i + 2 + length]
        if iei == 0x00 and length == 3:
            return body[0], body[1], body[2]
        if iei == 0x08 and length == 4:
            return (body[0] << 8) | body[1], body[2], body[3]
        i += 2 + length
    return None


class HandsetNetwork:
    def __init__(self, smsc_host: str, smsc_port: int, socket_path: Path) -> None:
        self.smsc = (smsc_host, smsc_port)
        self.socket_path = socket_path
        self._writer: asyncio.StreamWriter | None = None
        self._linked = asyncio.Event()
        self._subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._parts: dict[tuple[str, str, int, int], _Parts] = {}
        self._server: asyncio.AbstractServer | None = None
        self.delivered = 0

    # ------------------------------------------------------------- kannel side
    async def link(self) -> None:
        """Stay connected to bearerbox's fake SMSC, reconnecting when it drops."""
        delay = 0.05
        while True:
            try:
                reader, writer = await asyncio.open_connection(*self.smsc)
            except OSError:
                await asyncio.sleep(delay)  # bearerbox is not listening yet
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            self._writer = writer
            self._linked.set()
            try:
                await self._read(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                self._linked.clear()
                self._writer = None
                writer.close()
            log.warning("fake SMSC link dropped; reconnecting")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        pending: _Pending | None = None
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                match = _HEADER.match(line)
                if match is None and pending is not None and pending.kind == "text":
                    pending.data += b"\n" + line  # a text SMS with a line break in it
                    continue
                if pending is not None:
                    self._deliver(pending)
                    pending = None
                if match is None:
                    log.warning("unparsable line from the fake SMSC")
                    continue
                sender, receiver, kind, data = match.groups()
                pending = _Pending(sender.decode(), receiver.decode(), kind.decode(), data)
            # Kannel writes each message in one piece: once the buffer is drained at a
            # line end, the last message is complete.
            if pending is not None and not buffer:
                self._deliver(pending)
                pending = None

    def _deliver(self, msg: _Pending) -> None:
        if msg.kind == "udh":
            udh_raw, _, rest = msg.data.partition(b" ")
            if rest.startswith(b"data "):
                rest = rest[5:]
            udh = _unquote(udh_raw)
            data = _unquote(rest)
            info = _concat_info(udh)
            if info is None:
                self._push(msg.sender, msg.receiver, decode_body(data, "data"), 1)
                return
            ref, total, seq = info
            key = (msg.sender, msg.receiver, ref, total)
            parts = self._parts.setdefault(key, _Parts(total))
            parts.got[seq] = data
            if len(parts.got) == total:
                del self._parts[key]
                whole = b"".join(parts.got[i] for i in sorted(parts.got))
                self._push(msg.sender, msg.receiver, decode_body(whole, "data"), total)
            return
        data = msg.data if msg.kind == "text" else _unquote(msg.data)
        self._push(msg.sender, msg.receiver, decode_body(data, msg.kind), 1)

    def _push(self, sender: str, receiver: str, text: str, parts: int) -> None:
        self.delivered += 1
        event = {"op": "sms", "from": sender, "to": receiver, "text": text, "parts": parts}
        for key in (receiver, "*"):
            for queue in self._subscribers.get(key, ()):
                queue.put_nowait(event)

    async def linked(self) -> None:
        await self._linked.wait()

    async def inject(self, sender: str, receiver: str, text: str) -> None:
        await self._linked.wait()
        assert self._writer is not None
        self._writer.write(mo_line(sender, receiver, text))
        await self._writer.drain()

    # ------------------------------------------------------------ handset side
    async def serve(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(
            self._client, path=str(self.socket_path), limit=1 << 20
        )
        os.chmod(self.socket_path, 0o600)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        numbers: set[str] = set()

        async def pump() -> None:
            while True:
                event = await queue.get()
                writer.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
                await writer.drain()

        pumper = asyncio.create_task(pump())
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    op = request["op"]
                    if op == "subscribe":
                        number = str(request["number"])
                        numbers.add(number)
                        self._subscribers.setdefault(number, set()).add(queue)
                        queue.put_nowait({"op": "subscribed", "number": number})
                    elif op == "send":
                        await self.inject(
                            str(request["from"]),
                            str(request.get("to") or "12309"),
                            str(request["text"]),
                        )
                        queue.put_nowait({"op": "sent"})
                    else:
                        queue.put_nowait({"op": "error", "error": f"unknown op {op!r}"})
                except (ValueError, KeyError, TypeError) as exc:
                    queue.put_nowait({"op": "error", "error": type(exc).__name__})
        except (ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            for number in numbers:
                self._subscribers.get(number, set()).discard(queue)
            pumper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumper
            writer.close()


class HandsetClient:
    """A citizen's phone (or many) on the handset network's control socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HandsetClient:
        await self.connect()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(
            str(self.socket_path), limit=1 << 20
        )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            event = json.loads(line)
            (self._inbox if event.get("op") == "sms" else self._acks).put_nowait(event)

    async def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._writer is not None
        self._writer.write(json.dumps(request, ensure_ascii=False).encode() + b"\n")
        await self._writer.drain()
        reply = await asyncio.wait_for(self._acks.get(), 10)
        if reply.get("op") == "error":
            raise RuntimeError(f"handset network: {reply.get('error')}")
        return reply

    async def subscribe(self, number: str) -> None:
        await self._request({"op": "subscribe", "number": number})

    async def send(self, sender: str, text: str, to: str = "12309") -> None:
        await self._request({"op": "send", "from": sender, "to": to, "text": text})

    async def receive(self, timeout: float) -> dict[str, Any]:
        """The next SMS to a subscribed number; ``TimeoutError`` if none comes."""
        return await asyncio.wait_for(self._inbox.get(), timeout)

    async def messages(self, timeout: float, quiet: float) -> AsyncIterator[dict[str, Any]]:
        """SMS as they come: up to ``timeout`` for the first, then until ``quiet`` s pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = True
        while True:
            left = deadline - loop.time() if first else min(quiet, deadline - loop.time())
            if left <= 0:
                return
            try:
                event = await self.receive(left)
            except TimeoutError:
                return
            first = False
            yield event

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task


async def _main(smsc: str, socket_path: Path) -> None:
    host, _, port = smsc.rpartition(":")
    network = HandsetNetwork(host or "127.0.0.1", int(port), socket_path)
    await network.serve()
    linker = asyncio.create_task(network.link())
    await network.linked()
    print("ready", flush=True)
    await linker


def main() -> None:
    parser = argparse.ArgumentParser(description="fake handset network for Kannel's fake SMSC")
    parser.add_argument("--smsc", required=True, help="bearerbox's fake SMSC, host:port")
    parser.add_argument("--socket", required=True, type=Path, help="control socket path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.smsc, args.socket))


if __name__ == "__main__":
    main()
