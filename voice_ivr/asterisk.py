"""Running the embedded Asterisk: render our configuration into its root, start, stop.

The root is a Debian sid tree built by ``asterisk/provision.sh`` (Bookworm has no
Asterisk, and sid's libc must not touch the host). Production points the hub at an
existing Asterisk with ``HOTLINE_ARI_URL`` instead and installs the same templates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from hotline.config import PROJECT_ROOT, Settings
from voice_ivr import phones
from voice_ivr.ari import basic_auth

log = logging.getLogger(__name__)

TEMPLATES = PROJECT_ROOT / "asterisk" / "templates"
PROVISION = PROJECT_ROOT / "asterisk" / "provision.sh"


class AsteriskUnavailable(RuntimeError):
    """No Asterisk root can be built or started here; the message says why."""


def render_config(settings: Settings, etc_dir: Path) -> None:
    """Write every template into ``etc_dir`` with this installation's values (0600)."""
    ari = urlsplit(settings.ari_url)
    values = {
        "ari_host": ari.hostname or "127.0.0.1",
        "ari_port": str(ari.port or 8088),
        "ari_user": settings.ari_user,
        "ari_password": settings.ari_password,
        "ari_app": settings.ari_app,
        "sip_host": settings.sip_host,
        "sip_port": str(settings.sip_port),
        "trunk_password": settings.sip_trunk_password,
        "ivr_number": settings.ivr_number,
        "rtp_start": str(settings.rtp_start),
        "rtp_end": str(settings.rtp_start + 999),
    }
    etc_dir.mkdir(parents=True, exist_ok=True)
    for template in sorted(TEMPLATES.glob("*.conf")):
        target = etc_dir / template.name
        text = template.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    if not (etc_dir / phones.AGENTS_FILE).exists():  # the voice line fills it in
        phones.write(etc_dir, phones.render([]))


def make_hold_music(target: Path) -> None:
    """A quiet, slow chime for callers on hold (generated: no sound packages needed)."""
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    notes = ["C4", "E4", "G4", "E4", "A3", "C4", "E4", "C4"]
    synth = []
    for note in notes:
        synth += ["synth", "1.2", "sine", note, "fade", "0.05", "1.2", "0.6", ":"]
    tmp = target.with_suffix(".tmp.wav")
    subprocess.run(
        [
            "sox",
            "-R",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            str(tmp),
            *synth[:-1],
            "vol",
            "0.25",
            "repeat",
            "4",
        ],
        check=True,
        capture_output=True,
    )
    os.replace(tmp, target)


class EmbeddedAsterisk:
    """Asterisk in its own root, as a child process in its own process group."""

    def __init__(self, settings: Settings) -> None:
        if settings.asterisk_root is None:
            raise AsteriskUnavailable("HOTLINE_ASTERISK_ROOT is not set")
        self.settings = settings
        self.root = settings.asterisk_root
        self._proc: subprocess.Popen[bytes] | None = None

    def provision(self) -> None:
        """Build the root if it is missing (about a minute, once)."""
        if (self.root / ".hotline-provisioned").exists():
            return
        if os.geteuid() != 0:
            raise AsteriskUnavailable(
                "voice is off: building the Asterisk root needs root (debootstrap and chroot)"
            )
        result = subprocess.run([str(PROVISION), str(self.root)], check=False)
        if result.returncode != 0:
            raise AsteriskUnavailable(
                f"voice is off: asterisk/provision.sh failed (exit {result.returncode})"
            )

    def configure(self) -> None:
        render_config(self.settings, self.root / "etc" / "asterisk")
        shutil.copyfile("/etc/hosts", self.root / "etc" / "hosts")
        for sub in ("var/spool/asterisk/recording", "run/asterisk", "var/log/asterisk"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        make_hold_music(self.root / "var/lib/hotline/moh/hold.wav")

    def spawn(self) -> None:
        """Start Asterisk in the foreground of its own process group (log: var/log)."""
        self.configure()
        with (self.settings.var_dir / "log" / "asterisk.log").open("ab") as log_file:
            self._proc = subprocess.Popen(
                ["chroot", str(self.root), "/usr/sbin/asterisk", "-f", "-n", "-q"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        assert self._proc is not None
        try:
            await wait_for_ari(self.settings, timeout)
        except Exception:
            self.stop()
            raise
        log.info("asterisk started", extra={"pid": self._proc.pid})

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        subprocess.run(
            ["chroot", str(self.root), "/usr/sbin/asterisk", "-rx", "core stop now"],
            check=False,
            capture_output=True,
            timeout=15,
        )
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()


async def ari_info(settings: Settings, timeout: float = 2.0) -> dict[str, object]:
    """``GET /ari/asterisk/info``: raises if ARI does not answer."""
    headers = {"Authorization": basic_auth(settings.ari_user, settings.ari_password)}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(
            f"{settings.ari_url}/ari/asterisk/info", timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp,
    ):
        resp.raise_for_status()
        data: dict[str, object] = await resp.json()
        return data


async def wait_for_ari(settings: Settings, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await ari_info(settings)
            return
        except (aiohttp.ClientError, TimeoutError):
            if loop.time() > deadline:
                raise AsteriskUnavailable(f"ARI did not answer within {timeout:.0f} s") from None
            await asyncio.sleep(0.2)
