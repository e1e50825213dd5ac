"""docs/runbook.md names only what exists, so it cannot rot silently: every `PROXY <VERB>`
(and the keywords after it) is in `PROXY HELP`'s list, every `georedis_*` metric in
`proxy.observe.metrics.METRICS`, every alert in the generated rules, and every
`georedis <command> --option` in the CLI's own parser.
"""

from __future__ import annotations

import argparse
import re
import types
from pathlib import Path
from typing import Any, cast

import hiredis

from config.loader import load_config
from proxy.admin.verbs import handle
from proxy.cli import build_parser
from proxy.observe.metrics import METRIC_NAMES, METRICS
from proxy.tools.alerts import alert_rules

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"


def proxy_help() -> dict[str, str]:
    """Verb -> its usage, from the PROXY HELP reply itself."""
    reply = handle(cast(Any, None), cast(Any, types.SimpleNamespace(proto=2)), [b"PROXY", b"HELP"])
    reader = hiredis.Reader()
    reader.feed(cast(bytes, reply))
    lines = [line.decode() for line in reader.gets()]
    return {line.split()[1]: line for line in lines}


def alert_names() -> set[str]:
    rules = alert_rules(load_config(str(ROOT / "config" / "georedis.example.toml")))
    return {r["alert"] for g in rules["groups"] for r in g["rules"]}


def commands() -> dict[str, set[str]]:
    """Subcommand -> its option strings."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {
                name: {o for a in sub._actions for o in a.option_strings}
                for name, sub in action.choices.items()
            }
    raise AssertionError("no subcommands")


def code(text: str) -> list[str]:
    """The runbook's code: fenced blocks' lines and inline `spans`."""
    fence = r"^ *```\w*\n(.*?)^ *```"  # indented too: a block inside a list item
    blocks = re.findall(fence, text, flags=re.M | re.S)
    rest = re.sub(fence, "", text, flags=re.M | re.S)
    return [line for b in blocks for line in b.splitlines()] + re.findall(r"`([^`]+)`", rest)


def unknown_verbs(text: str, verbs: dict[str, str]) -> list[str]:
    bad = []
    for verb, words in re.findall(r"\bPROXY ([A-Z]+)((?: [A-Z]+\b)*)", text):
        usage = verbs.get(verb)
        if usage is None or any(w not in usage.split(" ", 2)[-1] for w in words.split()):
            bad.append(f"PROXY {verb}{words}")
    return bad


def unknown_metrics(text: str) -> list[str]:
    histograms = {m.name for m in METRICS if m.kind == "histogram"}
    bad = []
    for name in set(re.findall(r"\bgeoredis_[a-z0-9_]*[a-z0-9]", text)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in METRIC_NAMES and base not in histograms:
            bad.append(name)
    return sorted(bad)


def unknown_alerts(text: str, known: set[str]) -> list[str]:
    return sorted(set(re.findall(r"\bGeoredis[A-Z][A-Za-z]+", text)) - known)


def unknown_commands(text: str, known: dict[str, set[str]]) -> list[str]:
    bad = []
    for snippet in code(text):
        for m in re.finditer(r"\bgeoredis ([a-z][a-z-]*)(.*)", snippet):
            sub, rest = m.group(1), m.group(2)
            if sub not in known:
                bad.append(m.group(0))
                continue
            bad += [
                f"{sub} {o}"
                for o in re.findall(r"(?<!\S)--?[a-z][a-z-]*", rest)
                if o not in known[sub]
            ]
    return bad


def test_runbook_names_only_existing_verbs_metrics_alerts_and_commands() -> None:
    text = RUNBOOK.read_text()
    assert unknown_verbs(text, proxy_help()) == []
    assert unknown_metrics(text) == []
    assert unknown_alerts(text, alert_names()) == []
    assert unknown_commands(text, commands()) == []


def test_runbook_covers_the_playbooks() -> None:
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.M)
    for playbook in (
        "Node down",
        "High memory",
        "Replication lag",
        "Failover",
        "Restore from backup",
        "Daily health check",
        "Capacity review",
    ):
        assert playbook in headings


def test_the_checks_catch_a_name_that_does_not_exist() -> None:
    # What a runbook that rotted would say: each check must flag it.
    assert unknown_verbs("PROXY FROBNICATE and PROXY FAILOVER SIDEWAYS", proxy_help()) == [
        "PROXY FROBNICATE",
        "PROXY FAILOVER SIDEWAYS",
    ]
    assert unknown_metrics(
        "rate(georedis_node_upp[5m]) georedis_command_duration_seconds_bucket"
    ) == ["georedis_node_upp"]
    assert unknown_alerts("GeoredisNodeExploded", alert_names()) == ["GeoredisNodeExploded"]
    bad = unknown_commands("`georedis healthz` and `georedis health --config F --frob`", commands())
    assert bad == ["georedis healthz", "health --frob"]
    # ... and the real names pass.
    assert unknown_verbs("PROXY FAILOVER FORCE TO", proxy_help()) == []
    assert unknown_commands("`georedis capacity --config F --horizon 6months`", commands()) == []
