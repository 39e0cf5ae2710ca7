"""The HTML report in a real browser: Debian's Chromium, headless, driven by Playwright.

Every demo run's report is opened offline; the key elements must be visible, nothing may be
fetched, and a screenshot of each is saved. A run planted with script and HTML in every
string a model, a tool or a caller can choose must render as text: no dialog, no request,
no element or attribute the report does not write itself.

Outside CI the tests skip (with the reason) when ``/usr/bin/chromium`` is missing; in CI
(``CI`` set) that is a failure, since ``.ci/run`` installs it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from executus.cli._report import divergence_view, report_filename
from executus.events import Event
from executus.report import DivergenceView, Integrity, blob_hashes, render_index, render_report
from executus.storage import MemoryStore
from replay import Replayer
from tests._observed_runs import (
    PLANTED_AGENT,
    PLANTED_CHILD_ID,
    SCRIPT,
    demo_runs,
    family_agent,
    record_family,
    record_planted,
)

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPORT_TAGS = frozenset(
    [
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "header",
        "p",
        "h1",
        "h2",
        "h3",
        "span",
        "code",
        "section",
        "ul",
        "li",
        "a",
        "svg",
        "defs",
        "pattern",
        "line",
        "rect",
        "text",
        "g",
        "path",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "details",
        "summary",
        "pre",
        "figure",
        "img",
        "figcaption",
        "div",
        "footer",
    ]
)
"""Every element the report writes; anything else in a page would come from the log."""


def _browser_or_skip() -> None:
    missing = [
        what
        for what, present in (
            (str(CHROMIUM), CHROMIUM.exists()),
            ("the playwright package", importlib.util.find_spec("playwright") is not None),
        )
        if not present
    ]
    if not missing:
        return
    reason = (
        f"the browser tests need {' and '.join(missing)} (apt-get install chromium; pip install playwright)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: .ci/run installs them in CI")
    pytest.skip(reason)


@dataclass(frozen=True)
class Recorded:
    demo: MemoryStore
    family: MemoryStore
    planted: MemoryStore
    divergence: DivergenceView


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    """Every run the tests show, recorded before the browser starts: Playwright's sync API
    holds an event loop on this thread while it runs, and the executor needs its own."""
    demo = demo_runs()[0]
    changed = family_agent()  # any other agent: its prompt and tools differ from the researcher's
    view = divergence_view(Replayer(blobs=demo).replay_run(demo.read_run("demo-0001"), agent=changed))
    assert view is not None
    return Recorded(demo, record_family(), record_planted(), view)


@pytest.fixture(scope="module")
def browser(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh headless Chromium profile (a new --user-data-dir) for the module."""
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=FLAGS,
            headless=True,
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class Visit:
    """An opened page and everything it tried: dialogs, requests, console messages."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)

    def fetched_nothing(self, start: Path) -> bool:
        """Whether every request was a local report file or inline data."""
        return all(url.startswith(("file://", "data:")) for url in self.requests) and bool(self.requests)


def visit(browser: Any, path: Path) -> Visit:
    page = browser.new_page()
    seen = Visit(page)

    def on_dialog(dialog: Any) -> None:
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("console", lambda message: seen.console.append((message.type, message.text)))
    page.goto(path.as_uri(), wait_until="load")
    return seen


def write_report(directory: Path, store: MemoryStore, run_id: str, **options: Any) -> Path:
    events = store.read_run(run_id)
    blobs = {sha256: store.get_blob(sha256) for sha256 in blob_hashes(events)}
    path = directory / report_filename(run_id)
    path.write_text(render_report(events, blobs=blobs, run_href=report_filename, **options), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo(recorded: Recorded) -> MemoryStore:
    return recorded.demo


def count(events: list[Event], *kinds: str) -> int:
    return sum(1 for event in events if event.kind in kinds)


@pytest.mark.parametrize("run_id", [f"demo-000{n}" for n in range(1, 8)])
def test_every_demo_report_shows_its_run_offline(
    browser: Any, demo: MemoryStore, run_id: str, tmp_path: Path
) -> None:
    events = demo.read_run(run_id)
    agent = events[0].agent.name  # type: ignore[union-attr]
    path = write_report(tmp_path, demo, run_id, integrity=Integrity(True, "hash chain intact"))
    seen = visit(browser, path)
    page = seen.page

    assert page.locator("h1 .agent").inner_text() == agent
    assert page.locator("#why .headline").is_visible()
    assert page.locator("#why .headline").inner_text().startswith(f"Run {run_id} ({agent})")
    assert page.locator("#integrity h2").inner_text() == "Integrity: verified"
    assert page.locator("svg.timeline").is_visible()
    assert page.locator("svg.timeline a.bar").count() == count(events, "model_requested", "tool_started")
    assert page.locator("svg.timeline a.marker").count() == count(events, "critic_decided", "steer_injected")
    assert page.locator("details.event").count() == len(events)
    stopped = count(events, "run_cancelled")
    assert page.locator("svg.timeline a.stop").count() == stopped
    if stopped:
        assert page.locator("svg.timeline a.stop text").is_visible()
    page.screenshot(path=str(tmp_path / f"{run_id}.png"), full_page=True)
    assert (tmp_path / f"{run_id}.png").stat().st_size > 10_000
    assert seen.fetched_nothing(path), seen.requests
    assert seen.dialogs == []
    assert [text for kind, text in seen.console if kind == "error"] == []  # no CSP violation either


def test_the_stalled_run_shows_the_critic_the_moving_deadline_and_the_kill(
    browser: Any, demo: MemoryStore, tmp_path: Path
) -> None:
    page = visit(browser, write_report(tmp_path, demo, "demo-0002")).page

    assert page.locator("svg.timeline a.marker text").all_text_contents() == [
        "nudge",
        "extend +2m00s",
        "kill",
    ]
    assert page.locator("svg.timeline .idle text").text_content() == "idle 6m29s"
    deadline = page.locator("svg.timeline a.deadline text").text_content()
    assert "+17m00s" in deadline
    assert "moved from +15m00s at +4m30s" in deadline
    assert page.locator("svg.timeline a.stop text").text_content() == "killed at +6m30s"
    assert page.locator("svg.timeline a.bar.cut text").text_content() == "fetch_page · never finished"

    page.locator("svg.timeline a.stop text").click()  # a mark on the timeline opens its event
    assert page.locator("#event-8").get_attribute("open") is not None
    assert page.locator("#seq-8 pre").is_visible()
    assert page.locator("#event-7").get_attribute("open") is None


def test_images_and_artifacts_are_inline(browser: Any, demo: MemoryStore, tmp_path: Path) -> None:
    page = visit(browser, write_report(tmp_path, demo, "demo-0006")).page

    image = page.locator("#attachments img.inline")
    assert image.is_visible()
    assert image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, 2, 2]
    assert page.locator("#attachments .artifact-name").inner_text() == "review.md"
    assert page.locator("#attachments pre.artifact-text").inner_text().startswith("# UI review")


def test_parallel_tools_sit_side_by_side_and_child_runs_are_linked(
    browser: Any, recorded: Recorded, tmp_path: Path
) -> None:
    store = recorded.family
    parent = write_report(tmp_path, store, "fam-0001")
    write_report(tmp_path, store, "fam-0002")
    seen = visit(browser, parent)
    page = seen.page

    lanes = page.locator("svg.timeline .lane-label").all_text_contents()
    assert lanes == ["model", "tools 1", "tools 2", "events"]
    boxes = [page.locator(f'svg.timeline a.bar[href="#seq-{seq}"] rect').bounding_box() for seq in (4, 5)]
    assert boxes[0]["x"] == boxes[1]["x"]  # started together
    assert boxes[0]["y"] != boxes[1]["y"]  # in lanes of their own

    page.locator("#facts a.run-link").click()
    page.wait_for_load_state("load")
    assert page.locator("h1 .agent").inner_text() == "summariser"
    assert page.locator("#facts a.run-link").inner_text() == "fam-0001"  # and back to the parent
    assert seen.fetched_nothing(parent)


def test_a_replay_divergence_is_shown_side_by_side(
    browser: Any, recorded: Recorded, demo: MemoryStore, tmp_path: Path
) -> None:
    view = recorded.divergence
    page = visit(browser, write_report(tmp_path, demo, "demo-0001", divergence=view)).page

    assert page.locator("#divergence h2").inner_text() == f"Replay diverged at seq {view.seq}"
    assert page.locator("#field-differences tbody tr").count() == len(view.differences)
    assert page.locator("#request-differences tbody tr").count() == len(view.request_differences)
    assert page.locator("#field-differences tbody th").all_inner_texts() == [d.path for d in view.differences]
    changed_rows = page.locator("#divergence table.side-by-side tr.changed th").all_inner_texts()
    assert changed_rows
    assert {change.path.split(".")[0].split("[")[0] for change in view.differences} <= set(changed_rows)


def test_planted_script_and_html_stay_inert(browser: Any, recorded: Recorded, tmp_path: Path) -> None:
    store = recorded.planted
    path = write_report(tmp_path, store, "pl-0001")
    write_report(tmp_path, store, PLANTED_CHILD_ID)
    seen = visit(browser, path)
    page = seen.page
    for summary in page.locator("details.event > summary").all():
        summary.click()  # open every panel: hidden content must stay inert too
    page.wait_for_timeout(300)

    assert seen.dialogs == []
    assert seen.fetched_nothing(path), seen.requests
    assert page.evaluate("() => window.pwned") is None
    tags = set(page.evaluate("() => [...document.querySelectorAll('*')].map(e => e.localName)"))
    assert tags <= REPORT_TAGS, tags - REPORT_TAGS
    handlers = page.evaluate(
        "() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes].map(a => a.name))"
        ".filter(name => name.startsWith('on'))"
    )
    assert handlers == []
    sources = page.evaluate("() => [...document.images].map(img => img.getAttribute('src').slice(0, 22))")
    assert set(sources) <= {"data:image/png;base64,"}
    hrefs = page.evaluate("() => [...document.querySelectorAll('[href]')].map(a => a.getAttribute('href'))")
    for href in hrefs:
        assert href.startswith(("#seq-", "data:application/octet-stream;base64,")) or href in {
            report_filename(PLANTED_CHILD_ID)
        }, href
    # The planted text is shown as text, exactly.
    assert page.locator("h1 .agent").inner_text() == PLANTED_AGENT
    assert SCRIPT in page.locator("#event-13").inner_text()

    page.locator("#facts a.run-link").click()  # the child's id was a javascript: URL
    page.wait_for_load_state("load")
    assert page.url.endswith(report_filename(PLANTED_CHILD_ID))
    assert page.evaluate("() => window.pwned") is None
    assert seen.dialogs == []


def test_the_index_links_every_report(browser: Any, demo: MemoryStore, tmp_path: Path) -> None:
    summaries = demo.list_runs()
    for summary in summaries:
        write_report(tmp_path, demo, summary.run_id)
    index = tmp_path / "index.html"
    index.write_text(render_index(summaries, {s.run_id: report_filename(s.run_id) for s in summaries}))
    seen = visit(browser, index)
    page = seen.page

    assert page.locator("table.index tbody tr").count() == 7
    page.get_by_role("link", name="demo-0002").click()
    page.wait_for_load_state("load")
    assert page.locator("h1 .agent").inner_text() == "scraper"
    assert seen.fetched_nothing(index)
