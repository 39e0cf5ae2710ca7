"""The HTML report as text: self-contained, strictly fenced, and everything from the log escaped.

What a browser makes of it is checked in ``test_report_browser.py``; these hold without one.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from executus._forensics import explain
from executus.events import Event
from executus.report import CONTENT_SECURITY_POLICY, FieldChange, blob_hashes, render_report
from executus.report import DivergenceView as View
from executus.storage import Blob, MemoryStore
from tests._observed_runs import (
    ATTRIBUTE,
    ONERROR,
    SCRIPT,
    SVG_WITH_SCRIPT,
    demo_runs,
    record_planted,
    record_resumed,
)
from tests.test_otel import _FutureEvent


class _Elements(HTMLParser):
    """Every start tag and its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.tags


@pytest.fixture(scope="module")
def demo() -> MemoryStore:
    return demo_runs()[0]


@pytest.fixture(scope="module")
def planted() -> MemoryStore:
    return record_planted()


def report_of(store: MemoryStore, run_id: str) -> str:
    events = store.read_run(run_id)
    return render_report(events, blobs={h: store.get_blob(h) for h in blob_hashes(events)})


def test_the_page_fetches_nothing_and_runs_no_script(demo: MemoryStore) -> None:
    html = report_of(demo, "demo-0006")
    tags = elements(html)

    assert [tag for tag, _ in tags[:3]] == ["html", "head", "meta"]  # the policy comes before anything
    policy = tags[3][1]
    assert policy == {"http-equiv": "Content-Security-Policy", "content": CONTENT_SECURITY_POLICY}
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    style = re.search(r"<style>(.*?)</style>", html, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CONTENT_SECURITY_POLICY
    assert not [tag for tag, _ in tags if tag in ("script", "link", "iframe", "object", "embed", "base")]
    assert not [a for _, attributes in tags for a in attributes if a.startswith("on") or a == "style"]
    urls = [v for _, attributes in tags for k, v in attributes.items() if k in ("src", "href") and v]
    assert all(url.startswith(("#", "data:image/png;base64,")) for url in urls), urls


def test_planted_markup_reaches_the_page_only_as_escaped_text(planted: MemoryStore) -> None:
    html = report_of(planted, "pl-0001")

    assert SCRIPT not in html
    assert ONERROR not in html
    assert ATTRIBUTE not in html
    assert "&lt;script&gt;window.pwned = 1; alert(&#x27;script&#x27;)&lt;/script&gt;" in html
    assert not [tag for tag, _ in elements(html) if tag in ("script", "iframe", "link")]
    assert not [a for _, attributes in elements(html) for a in attributes if a.startswith("on")]


def test_only_raster_images_are_inlined_and_other_content_is_an_opaque_download(planted: MemoryStore) -> None:
    html = report_of(planted, "pl-0001")

    assert base64.b64encode(SVG_WITH_SCRIPT).decode() in html  # the SVG is there, but only as a download
    images = [attributes["src"] for tag, attributes in elements(html) if tag == "img"]
    assert images == []
    downloads = [attributes for tag, attributes in elements(html) if tag == "a" and "download" in attributes]
    assert downloads
    assert all((a["href"] or "").startswith("data:application/octet-stream;base64,") for a in downloads)


def test_missing_blobs_are_named_not_fatal(demo: MemoryStore) -> None:
    html = render_report(demo.read_run("demo-0006"), blobs={})

    assert "is not in the store" in html
    assert "not in the store" in html.split('id="attachments"')[1]


def test_a_new_event_kind_gets_a_generic_panel(demo: MemoryStore) -> None:
    events: list[Event] = list(demo.read_run("demo-0001"))
    future = _FutureEvent(
        run_id="demo-0001", seq=13, at=events[-1].at + timedelta(seconds=1), kind="run_paused"
    )

    # The fold learns a kind when it joins the catalogue; the page shows it whatever it is.
    html = render_report([*events, future], blobs={}, explanation=explain(events))  # type: ignore[list-item]

    assert 'id="seq-13"' in html
    assert '<span class="kind">run_paused</span>' in html
    assert "a note" in html


def test_a_divergence_escapes_both_sides(demo: MemoryStore) -> None:
    view = View(
        seq=3,
        expected={"kind": "model_responded", "text": SCRIPT},
        actual={"kind": "model_responded", "text": ONERROR},
        differences=(FieldChange("text", SCRIPT, ONERROR),),
    )
    html = render_report(demo.read_run("demo-0001"), blobs={}, divergence=view)

    assert SCRIPT not in html
    assert ONERROR not in html
    assert html.count('<tr class="changed"><th>text</th>') == 1


def test_blobs_listed_are_every_image_and_artifact(demo: MemoryStore) -> None:
    events = demo.read_run("demo-0006")
    hashes = blob_hashes(events)

    assert len(hashes) == 2
    assert {demo.get_blob(h).media_type for h in hashes} == {"image/png", "text/markdown"}
    assert isinstance(demo.get_blob(hashes[0]), Blob)


def test_a_run_still_going_shows_what_is_in_flight(demo: MemoryStore) -> None:
    html = render_report(demo.read_run("demo-0002")[:4], blobs={})

    assert '<span class="status running">running</span>' in html
    assert "fetch_page · never finished" in html
    assert "has not finished" in html  # why's headline


def test_a_resumed_run_shows_the_interrupted_step_and_the_resume() -> None:
    events = record_resumed().read_run("run-0001")

    html = render_report(events, blobs={})

    assert "step 1 · interrupted" in html
    assert ">resumed</text>" in html
    assert "deadline (moved from +2m00s at +5m00s): +7m00s" in html  # downtime does not count


def test_a_retry_event_is_marked_on_the_timeline(demo: MemoryStore) -> None:
    events: list[Event] = list(demo.read_run("demo-0001"))
    retry = _FutureEvent(run_id="demo-0001", seq=3, at=events[1].at, kind="model_attempt_failed")
    renumbered = [events[0], events[1], retry, *(e.model_copy(update={"seq": e.seq + 1}) for e in events[2:])]

    html = render_report(renumbered, blobs={}, explanation=explain(events))  # type: ignore[arg-type]

    assert '<a href="#seq-3" class="marker critic">' in html
    assert ">retry</text>" in html
