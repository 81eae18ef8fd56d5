"""The status page in a real headless Chromium (Debian's `chromium`): it loads, draws the chart, shows PRESSURE.

Chromium loads the page from the bot's server on 127.0.0.1, runs its script against /api/status
within a virtual-time budget, and prints the resulting DOM (`--dump-dom`), which the test reads.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.bot.status_support import Served, serve  # noqa: F401 - serve is a fixture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package (scripts/_packages.sh installs it)")
BROWSER_TIMEOUT_SECONDS = 120  # a bound on a hung browser, never what is asserted


class Element:
    def __init__(self, tag: str, attributes: dict[str, str]) -> None:
        self.tag = tag
        self.attributes = attributes
        self.text = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attributes.get("class", "").split())


class Dom(HTMLParser):
    """Every element of a dumped page, in document order, with the text directly inside it."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag not in {"meta", "link", "input", "br", "line", "rect"}:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if any(element.tag == tag for element in self._open):  # `</line>` closes nothing: lines are never opened
            while self._open.pop().tag != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def by_id(self, identifier: str) -> Element:
        return next(e for e in self.elements if e.attributes.get("id") == identifier)

    def all(self, tag: str, **attributes: str) -> list[Element]:
        return [
            e for e in self.elements
            if e.tag == tag and all(e.attributes.get(name.replace("_", "-")) == value for name, value in attributes.items())
        ]

    def rows(self, table: str) -> list[list[str]]:
        """The body rows of a table, as cell texts (the parser keeps elements flat, in order)."""
        start = self.elements.index(self.by_id(table))
        rows: list[list[str]] = []
        for element in self.elements[start + 1:]:
            if element.tag == "table":
                break
            if element.tag == "tr":
                rows.append([])
            elif element.tag == "td" and rows:
                rows[-1].append(element.text)
        return [row for row in rows if row]


def browse(url: str, profile: Path) -> Dom:
    """The page's DOM after its script ran: Chromium headless, as root too (--no-sandbox), its own profile."""
    done = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", f"--user-data-dir={profile}", "--virtual-time-budget=1000",
            "--dump-dom", url,
        ],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT_SECONDS, check=False,
    )
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return Dom(done.stdout)


def test_the_page_loads_and_draws_the_chart_with_the_limit_and_thresholds(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve()
    served.session.until_a_position_opens()
    served.cycles(4)
    dom = browse(served.server.url, tmp_path / "profile")
    assert dom.by_id("level").text == "NORMAL" and dom.by_id("health").text == "healthy"
    assert dom.all("body")[0].attributes["data-state"] == "ready"
    assert dom.by_id("chart").attributes["data-points"] == "4"
    for series in ("rss", "cache"):
        [line] = dom.all("polyline", data_series=series)
        assert line.attributes["data-points"] == "4" and len(line.attributes["points"].split()) == 4
    assert len(dom.all("line", data_line="limit")) == 1
    assert {e.attributes.get("data-line") for e in dom.all("line") if "threshold" in e.classes} - {None} == {
        "threshold-GC", "threshold-PRESSURE", "threshold-CRITICAL",
    }
    legend = {e.text.strip() for e in dom.all("span")}
    assert {"GC 70%", "PRESSURE 80%", "CRITICAL 90%", "RSS", "cache bytes"} <= legend
    assert dom.by_id("cycle").text == str(served.session.bot.cycle)
    assert {row[0] for row in dom.rows("caches")} == {"df_cache", "regime_cache"}
    assert {row[0] for row in dom.rows("positions")} == {p.symbol for p in served.session.bot.broker.positions.values()}
    assert dom.rows("fills")[0][1] == "open"


def test_a_forced_pressure_shows_on_the_page(
    serve: Callable[..., Served], tmp_path: Path, system_memory_used: Callable[[float], None]
) -> None:
    served = serve()
    served.cycles(2)
    system_memory_used(85.0)
    served.session.bot.memory.perform_maintenance()  # the maintenance pass decides the level, as its thread does
    served.cycles(2)
    dom = browse(served.server.url, tmp_path / "profile")
    level = dom.by_id("level")
    assert level.text == "PRESSURE" and "level-PRESSURE" in level.classes
    shaded = [e for e in dom.all("rect") if "shade-PRESSURE" in e.classes]
    assert shaded and float(shaded[0].attributes["width"]) > 0
    usage_ratio = served.json("/api/status")[1]["memory"]["usage_ratio"]
    assert dom.by_id("usage").text == f"{usage_ratio * 100:.1f}%" and usage_ratio >= 0.8


def test_a_token_protected_bot_shows_the_token_form_and_no_figures(serve: Callable[..., Served], tmp_path: Path) -> None:
    served = serve(token="page-token-5555")
    served.cycles()
    dom = browse(served.server.url, tmp_path / "profile")
    assert dom.all("body")[0].attributes["data-state"] == "token"
    assert "hidden" not in dom.by_id("token-form").attributes and dom.by_id("cycle").text == "–"
