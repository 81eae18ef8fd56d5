"""The files an operator drops in: deploy/prometheus/alerts.yml passes promtool (its checks and its unit tests),
and every metric the alerts and the Grafana dashboard name is one the bot's /metrics really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.bot.conftest import REPO_ROOT
from tests.bot.status_support import Served, serve  # noqa: F401 - serve is a fixture

pytest.importorskip("prometheus_client")

DEPLOY = REPO_ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "crypto-bot.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian's prometheus package)")
METRIC = re.compile(r"\b(?:crypto_bot|process|python)_[a-zA-Z0-9_]+\b")  # `up` is Prometheus' own, per target
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *arguments], capture_output=True, text=True, timeout=120, check=False)


@needs_promtool
def test_promtool_checks_the_alerting_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


@needs_promtool
def test_the_alerts_fire_as_their_unit_tests_say() -> None:
    done = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def exported_names(metrics_text: str) -> set[str]:
    """Every series name the exposition can hold: sample names, and each declared family with its type's suffixes."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            names.add(family)
            names.update(family + suffix for suffix in _SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def alert_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_metric_the_alerts_and_dashboard_name_is_exported(serve: Callable[..., Served]) -> None:
    served = serve()
    served.cycles(2)
    status, _, body = served.get("/metrics")
    assert status == 200
    exported = exported_names(body.decode())
    for source, expressions in (("alerts.yml", alert_expressions()), ("crypto-bot.json", dashboard_expressions())):
        named = {name for expression in expressions for name in METRIC.findall(expression)}
        assert named, source
        assert named <= exported, f"{source} names metrics the bot does not export: {sorted(named - exported)}"


def test_the_dashboard_asks_for_its_datasource_and_every_panel_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "crypto-bot" and dashboard["templating"]["list"][0]["type"] == "datasource"
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
