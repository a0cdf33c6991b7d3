"""Shared fixtures: a private PostgreSQL, the database matrix, and the real Rasa stack.

Every storage test runs twice, on SQLite and on PostgreSQL (the ``db_url`` fixture).
PostgreSQL is a throwaway cluster (initdb + pg_ctl, about a second and a half) that the
suite starts itself. Rasa and the action server are started once per session with the
model ``make test`` trained, exactly as ``hotline run`` starts them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from hotline.config import Settings, load_settings
from hotline.supervisor import Child, rasa_children, wait_ready
from hotline.training import model_path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run .ci/run or apt-get install postgresql")
    return found[-1].parent


class PostgresCluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hotline-pg-"))
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        os.chmod(self.dir, 0o777)

    def _run(self, *cmd: str) -> None:
        full = ["runuser", "-u", "postgres", "--", *cmd] if self.as_root else list(cmd)
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        bin_dir = _pg_bin()
        data = self.dir / "data"
        self._run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "hotline",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        self._run(
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._run(
            str(_pg_bin() / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "hotline",
                "-d",
                "postgres",
                "-q",
                "-c",
                f"CREATE DATABASE {name}",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return f"postgresql+asyncpg://hotline@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'hotline.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


SECRET = bytes(range(32))


@pytest.fixture(scope="session")
def base_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("var")
    env = {
        "HOTLINE_VAR_DIR": str(var),
        "HOTLINE_RASA_TOKEN": "test-token-" + uuid.uuid4().hex,
        "HOTLINE_SECRET_KEY": SECRET.hex(),
        "HOTLINE_RASA_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_ACTIONS_URL": f"http://127.0.0.1:{free_port()}",
        "HOTLINE_HTTP_PORT": str(free_port()),
        "HOTLINE_WS_MESSAGES_PER_MINUTE": "600",
        "HOTLINE_CHANNELS": "webchat",  # tests that need SMS enable it with their Kannel
    }
    return load_settings(env)


@pytest.fixture(scope="session")
def rasa_stack(base_settings: Settings) -> Iterator[list[Child]]:
    """The real Rasa server and action server, started once for the whole session."""
    model = Path(os.environ.get("HOTLINE_TEST_MODEL") or model_path(base_settings))
    if not model.exists():
        raise RuntimeError(f"no trained model at {model}: run `make test` (it trains first)")
    logs = base_settings.var_dir / "log"
    logs.mkdir(exist_ok=True)
    children = rasa_children(base_settings, model, logs)
    for child in children:
        child.start()
    try:
        asyncio.run(wait_ready(children))
        yield children
    finally:
        for child in reversed(children):
            child.stop()


@pytest.fixture
def settings(base_settings: Settings, db_url: str) -> Settings:
    return replace(base_settings, database_url=db_url)


@pytest.fixture
async def hub_server(settings: Settings) -> AsyncIterator[TestServer]:
    """The hub on a real port, on this test's database (Rasa may or may not be up)."""
    from hotline.web import create_app

    server = TestServer(create_app(settings), host="127.0.0.1", port=settings.http_port)
    await server.start_server()
    yield server
    await server.close()


# The session's Asterisk, Kannel and mail system: registered here once, so every test
# module shares one of each (a fixture imported into a module would start another).
from tests.channels.kannel import kannel, sms_hub, sms_settings  # noqa: E402,F401
from tests.channels.mail_fixtures import mail_system  # noqa: E402,F401
from tests.voice import asterisk  # noqa: E402,F401
