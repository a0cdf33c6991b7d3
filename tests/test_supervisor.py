from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from hotline.config import Settings
from hotline.supervisor import write_endpoints
from hotline.training import nlu_hash


def test_embedded_tracker_store_is_a_sibling_sqlite_file(base_settings: Settings) -> None:
    endpoints, credentials = write_endpoints(base_settings)
    data = yaml.safe_load(endpoints.read_text())
    assert data["tracker_store"] == {
        "type": "SQL",
        "dialect": "sqlite",
        "db": str(base_settings.var_dir / "rasa-tracker.db"),
    }
    assert data["action_endpoint"]["url"] == base_settings.actions_url + "/webhook"
    assert endpoints.stat().st_mode & 0o077 == 0
    assert yaml.safe_load(credentials.read_text()) == {"rest": None}


def test_production_tracker_store_uses_postgresql(base_settings: Settings) -> None:
    settings = replace(base_settings, rasa_tracker_url="postgresql://rasa:pw@db.internal:5433/rasa")
    endpoints, _ = write_endpoints(settings)
    store = yaml.safe_load(endpoints.read_text())["tracker_store"]
    assert store == {
        "type": "SQL",
        "dialect": "postgresql",
        "url": "db.internal",
        "port": 5433,
        "db": "rasa",
        "username": "rasa",
        "password": "pw",
    }


def test_model_key_changes_with_nlu_content(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "nlu.yml").write_text("a")
    first = nlu_hash(tmp_path)
    assert nlu_hash(tmp_path) == first
    (tmp_path / "data" / "nlu.yml").write_text("b")
    assert nlu_hash(tmp_path) != first


def test_text_fallback_numbers_buttons() -> None:
    from hotline.messages import Button, Outbound
    from hotline.ports import Channel as OutputChannel
    from hotline.store.models import AuthorKind

    message = Outbound(
        "c", AuthorKind.BOT, "实名还是匿名？", (Button("实名", "/affirm"), Button("匿名", "/deny"))
    )
    assert OutputChannel.as_text(message) == "实名还是匿名？\n1. 实名\n2. 匿名"
