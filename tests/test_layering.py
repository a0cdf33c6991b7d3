"""The structure the channel seam promises, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

from hotline.config import PROJECT_ROOT

CHANNEL_PACKAGES = ("voice_ivr", "channel_connectors")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_composition_root_imports_channels() -> None:
    offenders = {
        str(path.relative_to(PROJECT_ROOT))
        for path in (PROJECT_ROOT / "hotline").rglob("*.py")
        if any(name.split(".")[0] in CHANNEL_PACKAGES for name in imports(path))
    }
    assert offenders == {"hotline/web.py"}


def test_voice_ivr_has_no_import_cycle() -> None:
    package = PROJECT_ROOT / "voice_ivr"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    graph = {
        m: {
            n.split(".")[1]
            for n in imports(package / f"{m}.py")
            if n.startswith("voice_ivr.") and n.split(".")[1] in modules
        }
        - {m}
        for m in modules
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        if state.get(node) == 1:
            raise AssertionError("import cycle: " + " -> ".join((*trail, node)))
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph[node]):
            visit(nxt, (*trail, node))
        state[node] = 2

    for module in sorted(graph):
        visit(module, ())


def test_the_acd_names_no_channel() -> None:
    for path in (PROJECT_ROOT / "hotline" / "acd").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in ('"voice"', '"sms"', '"webchat"'):
            assert name not in text, (path.name, name)
