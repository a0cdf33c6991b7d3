"""Training the Rasa model, keyed on a content hash of ``nlu/`` so unchanged data is reused."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from hotline.config import PROJECT_ROOT, Settings

NLU_DIR = PROJECT_ROOT / "nlu"


def nlu_hash(root: Path = NLU_DIR) -> str:
    """A digest of every file under ``nlu/`` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.name.startswith("."):
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def model_path(settings: Settings) -> Path:
    return settings.models_dir / f"hotline-{nlu_hash()}.tar.gz"


def rasa_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RASA_TELEMETRY_ENABLED"] = "false"
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def train(settings: Settings, *, force: bool = False) -> Path:
    """Train unless a model for the current ``nlu/`` exists; returns the model path."""
    target = model_path(settings)
    if target.exists() and not force:
        print(f"[train] model up to date: {target.name}", flush=True)
        return target
    rasa = settings.rasa_venv / "bin" / "rasa"
    if not rasa.exists():
        raise SystemExit(f"[train] {rasa} is missing: run `make setup` first")
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    print(f"[train] training {target.name} (about a minute; progress follows)", flush=True)
    cmd = [
        str(rasa),
        "train",
        "--config",
        str(NLU_DIR / "config.yml"),
        "--domain",
        str(NLU_DIR / "domain.yml"),
        "--data",
        str(NLU_DIR / "data"),
        "--out",
        str(settings.models_dir),
        "--fixed-model-name",
        target.name.removesuffix(".tar.gz"),
    ]
    if force:
        cmd.append("--force")
    result = subprocess.run(cmd, cwd=PROJECT_ROOT, env=rasa_env(), check=False)
    if result.returncode != 0 or not target.exists():
        raise SystemExit(f"[train] rasa train failed with exit code {result.returncode}")
    for old in settings.models_dir.glob("hotline-*.tar.gz"):
        if old != target:
            old.unlink()
    print(f"[train] done: {target}", flush=True)
    return target
