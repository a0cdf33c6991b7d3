#!/usr/bin/env python3
"""Held-out intent accuracy benchmark for the hotline Rasa NLU model.

Reads ``nlu/tests/heldout_nlu.yml`` (Rasa 3.x NLU YAML: ``nlu: - intent: X
examples: |`` blocks), sends every example sentence to a running Rasa server's
``POST /model/parse`` endpoint and compares the predicted intent with the
labelled one.

Start a server first, e.g.::

    RASA_TELEMETRY_ENABLED=false rasa run --enable-api -p 5005 -i 127.0.0.1 \
        -m models/<model>.tar.gz

then run::

    python bench/nlu_accuracy.py                       # default http://127.0.0.1:5005
    python bench/nlu_accuracy.py --url http://127.0.0.1:5105
    python bench/nlu_accuracy.py --token SECRET        # server started with --auth-token
    python bench/nlu_accuracy.py --json                # machine-readable summary
    python bench/nlu_accuracy.py --data other_heldout.yml --concurrency 8

Output: overall accuracy, per-intent accuracy, per-language accuracy
(``zh`` if the sentence contains a CJK character, else ``en``) and the list of
misclassified sentences. A ``nlu_fallback`` answer (FallbackClassifier:
low confidence or two intents too close) counts as a miss; the best real
intent is shown next to it. With ``--json`` a single JSON object is printed
instead. The exit code is 0 whenever the benchmark ran (whatever the score);
it is 2 if the data file cannot be read or the server is unreachable.

Dependencies: Python 3.11 standard library, PyYAML, aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import yaml

FALLBACK_INTENT = "nlu_fallback"
DEFAULT_DATA = Path(__file__).resolve().parent.parent / "nlu" / "tests" / "heldout_nlu.yml"
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
# Entity annotations like [text](entity) or [text]{"entity": ...} -> text
ENTITY_RE = re.compile(r"\[([^\]]+)\](\([^)]*\)|\{[^}]*\})")


def language_of(text: str) -> str:
    """Return ``zh`` if the text contains any CJK ideograph, else ``en``."""
    return "zh" if CJK_RE.search(text) else "en"


def load_examples(path: Path) -> list[tuple[str, str]]:
    """Return ``(intent, text)`` pairs from a Rasa NLU YAML file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    pairs: list[tuple[str, str]] = []
    for block in doc.get("nlu") or []:
        intent = block.get("intent")
        if not intent:
            continue  # synonyms / regexes / lookups
        examples = block.get("examples") or ""
        lines = (
            examples.splitlines()
            if isinstance(examples, str)
            else [(e.get("text", "") if isinstance(e, dict) else str(e)) for e in examples]
        )
        for line in lines:
            line = line.strip()
            if line.startswith("- "):
                line = line[2:].strip()
            if not line:
                continue
            pairs.append((intent, ENTITY_RE.sub(r"\1", line)))
    return pairs


async def parse_one(
    session: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    text: str,
    sem: asyncio.Semaphore,
) -> tuple[str | None, float, str | None, float | None]:
    async with sem:
        for attempt in range(3):
            try:
                async with session.post(url, params=params, json={"text": text}) as resp:
                    resp.raise_for_status()
                    data: dict[str, Any] = await resp.json()
                    intent = data.get("intent") or {}
                    name = intent.get("name")
                    conf = float(intent.get("confidence") or 0.0)
                    if name == FALLBACK_INTENT:
                        # nlu_fallback stays the prediction (it counts as a miss),
                        # but remember the best real intent for the report.
                        ranking = [
                            r
                            for r in data.get("intent_ranking") or []
                            if r.get("name") != FALLBACK_INTENT
                        ]
                        if ranking:
                            top = ranking[0]
                            return name, conf, top.get("name"), float(top.get("confidence") or 0.0)
                    return name, conf, None, None
            except aiohttp.ClientResponseError:
                raise
            except (TimeoutError, aiohttp.ClientError):
                if attempt == 2:
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
    return None, 0.0, None, None  # pragma: no cover


async def run(args: argparse.Namespace) -> dict[str, Any]:
    examples = load_examples(Path(args.data))
    url = args.url.rstrip("/") + "/model/parse"
    params = {"token": args.token} if args.token else {}
    sem = asyncio.Semaphore(max(1, args.concurrency))
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        preds = await asyncio.gather(
            *(parse_one(session, url, params, text, sem) for _, text in examples)
        )

    per_intent: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    errors = []
    correct = 0
    for (gold, text), (pred, conf, runner_up, runner_conf) in zip(examples, preds, strict=False):
        ok = pred == gold
        lang = language_of(text)
        for bucket in (per_intent[gold], per_lang[lang]):
            bucket[0] += ok
            bucket[1] += 1
        correct += ok
        if not ok:
            err = {
                "text": text,
                "expected": gold,
                "predicted": pred,
                "confidence": round(conf, 4),
                "language": lang,
            }
            if runner_up is not None:
                err["fallback_top_intent"] = runner_up
                err["fallback_top_confidence"] = round(runner_conf or 0.0, 4)
            errors.append(err)

    def acc(c: int, n: int) -> float:
        return round(c / n, 4) if n else 0.0

    return {
        "url": url,
        "data": str(args.data),
        "total": len(examples),
        "correct": correct,
        "accuracy": acc(correct, len(examples)),
        "per_intent": {
            k: {"correct": c, "total": n, "accuracy": acc(c, n)}
            for k, (c, n) in sorted(per_intent.items())
        },
        "per_language": {
            k: {"correct": c, "total": n, "accuracy": acc(c, n)}
            for k, (c, n) in sorted(per_lang.items())
        },
        "misclassified": errors,
    }


def print_report(s: dict[str, Any]) -> None:
    print(f"Held-out NLU benchmark: {s['data']}")
    print(f"Server: {s['url']}")
    print(f"\nOverall accuracy: {s['accuracy']:.2%} ({s['correct']}/{s['total']})")
    print("\nPer language:")
    for lang, r in s["per_language"].items():
        print(f"  {lang:<4} {r['accuracy']:7.2%}  ({r['correct']}/{r['total']})")
    print("\nPer intent:")
    width = max((len(k) for k in s["per_intent"]), default=10)
    for intent, r in s["per_intent"].items():
        print(f"  {intent:<{width}} {r['accuracy']:7.2%}  ({r['correct']}/{r['total']})")
    print(f"\nMisclassified ({len(s['misclassified'])}):")
    for e in s["misclassified"]:
        extra = ""
        if "fallback_top_intent" in e:
            extra = f"; top intent {e['fallback_top_intent']} ({e['fallback_top_confidence']:.2f})"
        print(
            f"  [{e['language']}] {e['text']!r}: expected {e['expected']}, "
            f"got {e['predicted']} ({e['confidence']:.2f}{extra})"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Measure intent accuracy of a running Rasa server on the held-out NLU set."
    )
    ap.add_argument("--url", default="http://127.0.0.1:5005", help="Rasa server base URL")
    ap.add_argument("--token", default=None, help="auth token (sent as ?token=)")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="held-out NLU YAML file")
    ap.add_argument("--json", action="store_true", help="print a JSON summary")
    ap.add_argument("--concurrency", type=int, default=4, help="parallel requests")
    ap.add_argument("--timeout", type=float, default=300.0, help="total HTTP timeout (s)")
    args = ap.parse_args(argv)
    try:
        load_examples(Path(args.data))
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: cannot read {args.data}: {exc}", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(run(args))
    except (TimeoutError, OSError, aiohttp.ClientError) as exc:
        print(f"error: request to {args.url} failed: {exc!r}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        print_report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
