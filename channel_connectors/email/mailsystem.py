"""The embedded local mail system: Dovecot for IMAP (and LMTP), aiosmtpd for SMTP.

``make run`` starts one so that a newcomer can try the email channel without a mail
provider, and the tests start one per session. Every address at every domain is a
mailbox that logs in with the one shared password.

* Dovecot runs unprivileged as its own instance (``dovecot -F -c ROOT/dovecot.conf``,
  with its own ``base_dir``, ``state_dir`` and ``instance_name``): IMAP on
  127.0.0.1:``imap_port``, LMTP on the unix socket ``ROOT/run/lmtp``, mail in Maildir
  under ``ROOT/mail/<domain>/<user>``, its log in ``ROOT/dovecot.log``. It dies with
  this process (``PR_SET_PDEATHSIG``).
* The SMTP relay is an aiosmtpd server in the caller's event loop on
  127.0.0.1:``smtp_port``. It adds a ``Received`` header, hands each message to
  Dovecot's LMTP and answers 250 only once LMTP has stored it (4xx when LMTP is down,
  552 over the size limit). AUTH PLAIN/LOGIN takes the shared password; mail without
  AUTH is accepted from loopback, which is the only address it listens on.

Nothing here logs an address or a message's content.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import email.utils
import grp
import hashlib
import hmac
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

START_TIMEOUT = 30.0
STOP_GRACE = 10.0
LMTP_TIMEOUT = 60.0
_LIBEXEC_DIRS = (Path("/usr/lib/dovecot"), Path("/usr/libexec/dovecot"))
_PACKAGES = "dovecot-imapd dovecot-lmtpd"
_PR_SET_PDEATHSIG = 1
_MAX_SOCKET_DIR = 80  # sun_path holds 107 bytes; Dovecot adds up to ~25 under base_dir

log = logging.getLogger(__name__)
# aiosmtpd logs every command line (MAIL FROM, RCPT TO) at INFO on "mail.log".
logging.getLogger("mail.log").setLevel(logging.WARNING)


class MailSystemError(RuntimeError):
    """The embedded mail system could not start (the message says why)."""


def _dovecot_binary() -> str | None:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return shutil.which("dovecot", path=path)


def _libexec_dir() -> Path | None:
    for candidate in _LIBEXEC_DIRS:
        if (candidate / "imap").exists() or (candidate / "lmtp").exists():
            return candidate
    return None


def unavailable() -> str | None:
    """Why the embedded mail system cannot run on this machine, or None if it can."""
    if sys.platform != "linux":
        return "the embedded mail system needs Linux (Dovecot)"
    if _dovecot_binary() is None:
        return f"Dovecot is not installed: apt-get install {_PACKAGES}"
    libexec = _libexec_dir()
    missing = []
    if libexec is None or not (libexec / "imap").exists():
        missing.append("dovecot-imapd")
    if libexec is None or not (libexec / "lmtp").exists():
        missing.append("dovecot-lmtpd")
    if missing:
        return f"Dovecot lacks IMAP or LMTP: apt-get install {' '.join(missing)}"
    if os.geteuid() == 0:
        for user in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                return f"the system user {user!r} is missing: apt-get install {_PACKAGES}"
    return None


def _die_with_parent() -> None:
    """Runs in the child: if the hub dies (even by SIGKILL), the kernel kills Dovecot too,
    so a restarted hub never finds its ports held by orphans."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _port_free(port: int) -> str | None:
    """None if ``port`` can be bound on loopback, else why not."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _check_port_free(port: int, what: str) -> None:
    reason = _port_free(port)
    if reason:
        raise MailSystemError(f"{what} port {port} is in use ({reason})")


async def _wait_port_free(port: int, what: str, timeout: float = 5.0) -> None:
    """Like ``_check_port_free``, but gives the processes of a crashed run (which still
    hold the listener until they notice their master is gone) a moment to exit."""
    deadline = time.monotonic() + timeout
    while True:
        reason = _port_free(port)
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise MailSystemError(f"{what} port {port} is in use ({reason})")
        await asyncio.sleep(0.05)  # no event tells when another process exits


def _check_reachable(path: Path, uid: int, gid: int) -> None:
    """Dovecot's mail processes run as ``uid``: every directory above ``path`` must let
    them through."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            raise MailSystemError(
                f"the mail user (uid {uid}) cannot enter {directory} "
                f"(mode {st.st_mode & 0o777:o}): use a mail root it can reach"
            )


def _is_loopback(peer: Any) -> bool:
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    return isinstance(host, str) and (host.startswith("127.") or host == "::1")


class _LmtpUnavailable(Exception):
    """Dovecot's LMTP could not be reached or broke off."""


class _LmtpClient:
    """One LMTP transaction (RFC 2033) on Dovecot's unix socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        while True:
            raw = await self.reader.readline()
            if not raw.endswith(b"\n"):
                raise _LmtpUnavailable("LMTP closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(line) < 3 or not line[:3].isdigit():
                raise _LmtpUnavailable("LMTP sent a malformed reply")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    async def command(self, line: str) -> tuple[int, list[str]]:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.reply()


def _dot_stuff(data: bytes) -> bytes:
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data)


class _RelayHandler:
    """aiosmtpd handler: every accepted message goes on to LMTP before the 250."""

    def __init__(self, system: LocalMailSystem) -> None:
        self.system = system

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not session.authenticated and not _is_loopback(session.peer):
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        data = self.system.received_header(session) + content
        try:
            codes = await asyncio.wait_for(
                self.system.deliver(envelope.mail_from or "", list(envelope.rcpt_tos), data),
                LMTP_TIMEOUT,
            )
        except (OSError, TimeoutError, _LmtpUnavailable) as exc:
            log.warning("mail relay: local delivery unavailable (%s)", type(exc).__name__)
            return "451 4.3.0 Local mail delivery unavailable, try again later"
        if all(200 <= code < 300 for code in codes):
            return "250 2.0.0 OK: delivered"
        failed = sum(1 for code in codes if code >= 300)
        log.warning("mail relay: %d of %d recipients refused by LMTP", failed, len(codes))
        if any(400 <= code < 500 for code in codes):
            return "451 4.3.0 Local delivery failed, try again later"
        return "554 5.0.0 Local delivery failed"


class LocalMailSystem:
    """Dovecot (IMAP, LMTP) plus an in-loop SMTP relay, all under ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        imap_port: int,
        smtp_port: int,
        password: str,
        max_message_bytes: int = 25 * 1024 * 1024,
    ) -> None:
        if not password or not re.fullmatch(r"[!-~]+", password) or re.search(r"[%\"\\]", password):
            raise ValueError(
                'the mail password must be printable ASCII without spaces, "%", \'"\' or "\\"'
            )
        self.root = Path(root).absolute()
        if re.search(r"[\s%]", str(self.root)):
            raise ValueError("the mail root's path must not contain whitespace or '%'")
        self._imap_port = imap_port
        self._smtp_port = smtp_port
        self.password = password
        self.max_message_bytes = max_message_bytes
        self._popen: subprocess.Popen[bytes] | None = None
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    # ---------------------------------------------------------------- properties
    @property
    def imap_port(self) -> int:
        return self._imap_port

    @property
    def smtp_port(self) -> int:
        return self._smtp_port

    @property
    def base_dir(self) -> Path:
        return self.root / "run"

    @property
    def lmtp_socket(self) -> Path:
        return self.base_dir / "lmtp"

    @property
    def log_path(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def dovecot_pid(self) -> int | None:
        """The Dovecot master's pid while it runs (for tests that kill it)."""
        if self._popen is None or self._popen.poll() is not None:
            return None
        return self._popen.pid

    def running(self) -> tuple[bool, str]:
        """For /healthz: is every part up, and if not, which is down."""
        down = []
        if self.dovecot_pid is None:
            down.append("Dovecot")
        if self._server is None or not self._server.is_serving():
            down.append("SMTP relay")
        return (not down, f"{', '.join(down)} not running" if down else "running")

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Start Dovecot and the SMTP relay; returns once both answer."""
        if self._server is None:
            _check_port_free(self._smtp_port, "SMTP")
        await self.start_dovecot()
        try:
            await self.start_smtp()
        except BaseException:
            await self.stop_dovecot()
            raise

    async def stop(self) -> None:
        """Stop the SMTP relay and Dovecot (terminated and reaped)."""
        await self.stop_smtp()
        await self.stop_dovecot()

    async def start_smtp(self) -> None:
        if self._server is not None:
            return
        _check_port_free(self._smtp_port, "SMTP")
        loop = asyncio.get_running_loop()
        handler = _RelayHandler(self)

        def factory() -> SMTP:
            smtp = SMTP(
                handler,
                data_size_limit=self.max_message_bytes,
                enable_SMTPUTF8=True,
                hostname="localhost",
                ident="hotline embedded relay",
                authenticator=self._authenticate,
                auth_require_tls=False,
                auth_required=False,
                timeout=300,
                loop=loop,
            )
            self._connections.add(smtp)
            return smtp

        self._server = await loop.create_server(factory, "127.0.0.1", self._smtp_port)

    async def stop_smtp(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for smtp in list(self._connections):
            if smtp.transport is not None:
                smtp.transport.close()
        await server.wait_closed()

    async def start_dovecot(self) -> None:
        """Start (or restart, after a crash) Dovecot; returns once IMAP and LMTP answer."""
        if self.dovecot_pid is not None:
            return
        if self._popen is not None:  # it crashed: take down what is left of its group
            await self.stop_dovecot()
        reason = unavailable()
        if reason:
            raise MailSystemError(reason)
        binary = _dovecot_binary()
        assert binary is not None
        uid, gid = self._prepare()
        await _wait_port_free(self._imap_port, "IMAP")
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config(uid, gid))
        conf.chmod(0o600)
        self._popen = self._spawn(binary, conf)
        try:
            await self._wait_ready(time.monotonic() + START_TIMEOUT)
        except BaseException:
            await self.stop_dovecot()
            raise

    def _spawn(self, binary: str, conf: Path) -> subprocess.Popen[bytes]:
        # Called in the loop's own thread: PR_SET_PDEATHSIG fires when the thread that
        # forked the child ends, so never from a worker thread.
        with open(self.root / "dovecot.out", "ab") as sink:
            return subprocess.Popen(
                [binary, "-F", "-c", str(conf)],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    async def stop_dovecot(self) -> None:
        """SIGTERM Dovecot's process group, SIGKILL after a grace period, and reap it."""
        popen, self._popen = self._popen, None
        if popen is None:
            return
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
            if not await self._reap(popen, STOP_GRACE):
                log.warning("Dovecot ignored SIGTERM for %.0f s; killing it", STOP_GRACE)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                await self._reap(popen, 5.0)
        # The master is gone; its children follow it, but a SIGKILLed master leaves
        # them to notice on their own: take the rest of the group down too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)

    @staticmethod
    async def _reap(popen: subprocess.Popen[bytes], timeout: float) -> bool:
        try:
            await asyncio.to_thread(popen.wait, timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    # ---------------------------------------------------------------- internals
    def _prepare(self) -> tuple[int, int]:
        """Create the directories, own them by the mail user, clear a crashed run's pid."""
        self.root.mkdir(parents=True, exist_ok=True)
        if len(str(self.base_dir)) > _MAX_SOCKET_DIR:
            raise MailSystemError(
                f"the mail root {self.root} is too long for unix sockets; use a shorter path"
            )
        if os.geteuid() == 0:
            owner = pwd.getpwnam("dovecot")
            uid, gid = owner.pw_uid, owner.pw_gid
            self.root.chmod(0o755)
            _check_reachable(self.root, uid, gid)
        else:
            uid, gid = os.geteuid(), os.getegid()
        for name in ("run", "state"):
            (self.root / name).mkdir(exist_ok=True)
        mail = self.root / "mail"
        mail.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(mail, uid, gid)
        pid_file = self.base_dir / "master.pid"
        if pid_file.exists():
            self._clear_stale_pid(pid_file)
        return uid, gid

    def _clear_stale_pid(self, pid_file: Path) -> None:
        try:
            pid = int(pid_file.read_text().strip() or "0")
        except (OSError, ValueError):
            pid = 0
        if pid > 0:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                cmdline = b""
            if str(self.root / "dovecot.conf").encode() in cmdline:
                raise MailSystemError(
                    f"another Dovecot (pid {pid}) already runs on {self.root}; stop it first"
                )
        pid_file.unlink(missing_ok=True)

    def _config(self, uid: int, gid: int) -> str:
        if os.geteuid() == 0:
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
        else:
            internal_user = pwd.getpwuid(uid).pw_name
            internal_group = grp.getgrgid(gid).gr_name
            login_user = internal_user
        name = hashlib.sha256(str(self.root).encode()).hexdigest()[:10]
        root = self.root
        return f"""\
# Written by channel_connectors/email/mailsystem.py at every start; edits are lost.
instance_name = hotline-mail-{name}
base_dir = {self.base_dir}
state_dir = {root}/state
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Lu
auth_failure_delay = 0
log_path = {self.log_path}
info_log_path = {self.log_path}
# No addresses in the log: these formats leave out the user.
login_log_format_elements = method=%m rip=%r lip=%l mpid=%e %c session=<%{{session}}>
mail_log_prefix = "%s<%{{pid}}><%{{session}}>: "
deliver_log_format = %$
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {min(uid, 500)}
first_valid_gid = {min(gid, 1)}
mail_location = maildir:~/Maildir
# The relay already wrote the Received header; keep the message as it came.
lmtp_add_received_header = no
lmtp_hdr_delivery_address = none
postmaster_address = postmaster@localhost

passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%d/%n allow_all_users=yes
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self._imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  # No growing delay for logins after a wrong password (tests try some).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""

    async def _wait_ready(self, deadline: float) -> None:
        for check in (self._imap_ready, self._lmtp_ready):
            while True:
                self._check_alive()
                try:
                    if await asyncio.wait_for(check(), max(0.1, deadline - time.monotonic())):
                        break
                except (OSError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    self._fail(f"Dovecot did not answer within {START_TIMEOUT:.0f} s")
                await asyncio.sleep(0.05)  # not listening yet: try again

    async def _imap_ready(self) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", self._imap_port)
        try:
            greeting = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return greeting.startswith(b"* OK")

    async def _lmtp_ready(self) -> bool:
        reader, writer = await asyncio.open_unix_connection(str(self.lmtp_socket))
        try:
            greeting = await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return greeting.startswith(b"220")

    def _check_alive(self) -> None:
        if self._popen is None:
            raise MailSystemError("Dovecot was stopped while starting")
        code = self._popen.poll()
        if code is not None:
            self._fail(f"Dovecot exited with status {code}")

    def _fail(self, what: str) -> None:
        details = "\n".join(
            t for t in (_tail(self.root / "dovecot.out"), _tail(self.log_path)) if t
        )
        raise MailSystemError(f"{what}; see {self.log_path}" + (f":\n{details}" if details else ""))

    # ---------------------------------------------------------------- SMTP relay
    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            mechanism in ("PLAIN", "LOGIN")
            and isinstance(data, LoginPassword)
            and hmac.compare_digest(data.password, self.password.encode())
        )
        return AuthResult(success=ok, handled=False)

    def received_header(self, session: Session) -> bytes:
        """The relay's own trace line (RFC 5321 4.4); it names no address."""
        helo = re.sub(r"[^A-Za-z0-9.:\[\]-]", "", session.host_name or "")[:64] or "unknown"
        peer = session.peer[0] if isinstance(session.peer, tuple) else "unknown"
        with_ = (
            ("ESMTPA" if session.authenticated else "ESMTP") if session.extended_smtp else "SMTP"
        )
        date = email.utils.formatdate(localtime=True)
        return (
            f"Received: from {helo} ([{peer}])\r\n\tby localhost (hotline embedded relay)"
            f" with {with_} id {secrets.token_hex(6)};\r\n\t{date}\r\n"
        ).encode("ascii")

    async def deliver(self, sender: str, recipients: list[str], data: bytes) -> list[int]:
        """Hand one message to Dovecot's LMTP; one reply code per recipient."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.lmtp_socket))
        except OSError as exc:
            raise _LmtpUnavailable("LMTP is not listening") from exc
        lmtp = _LmtpClient(reader, writer)
        try:
            code, _ = await lmtp.reply()
            if code != 220:
                raise _LmtpUnavailable("LMTP greeting refused")
            code, features = await lmtp.command("LHLO localhost")
            if code != 250:
                raise _LmtpUnavailable("LHLO refused")
            params = ""
            if any(f.upper().startswith("8BITMIME") for f in features):
                params += " BODY=8BITMIME"
            if any(f.upper().startswith("SMTPUTF8") for f in features) and not (
                sender.isascii() and all(r.isascii() for r in recipients)
            ):
                params += " SMTPUTF8"
            code, _ = await lmtp.command(f"MAIL FROM:<{sender}>{params}")
            if code != 250:
                return [code] * len(recipients)
            codes: list[int] = []
            for rcpt in recipients:
                code, _ = await lmtp.command(f"RCPT TO:<{rcpt}>")
                codes.append(code)
            accepted = [i for i, c in enumerate(codes) if 200 <= c < 300]
            if not accepted:
                return codes
            code, _ = await lmtp.command("DATA")
            if code != 354:
                raise _LmtpUnavailable("DATA refused")
            writer.write(_dot_stuff(data) + b".\r\n")
            await writer.drain()
            for i in accepted:
                codes[i], _ = await lmtp.reply()
            with contextlib.suppress(_LmtpUnavailable, OSError):
                await lmtp.command("QUIT")
            return codes
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
