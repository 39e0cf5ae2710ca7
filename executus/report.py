"""A run as one self-contained HTML page: readable offline, attachable to a ticket.

:func:`render_report` takes plain data (a run's events, the blobs its images and artifacts
point to, and optionally ``why``'s explanation, an integrity verdict and a replay divergence)
and returns the page: the explanation at the top, a timeline of model steps and tool calls,
the images and artifacts inline, and a panel per event with its payload. :func:`render_index`
lists many reports. Nothing here reads a store or a clock.

The page fetches nothing: styles are inline, images are ``data:`` URIs, and a strict
Content-Security-Policy (``default-src 'none'``, the one stylesheet allowed by its hash, images
only from ``data:``, no script at all) holds even if something slipped through. Everything
taken from the log (model text, tool names and arguments, agent and artifact names, media
types) is escaped with :func:`html.escape` (``quote=True``), in text and in attributes alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Final

from pydantic import JsonValue

from executus._describe import describe_event
from executus._events import (
    ArtifactRef,
    ChildRunStarted,
    Event,
    PostRunFinished,
    RunFinished,
    RunStarted,
    SteerInjected,
    encode_event,
)
from executus._forensics import SECTION_TITLES, Explanation, explain, format_clock, format_duration
from executus._messages import ImagePart
from executus._report_style import STYLE
from executus._report_timeline import render_timeline
from executus._store import Blob, RunSummary

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "DivergenceView",
    "FieldChange",
    "Integrity",
    "blob_hashes",
    "render_index",
    "render_report",
]

_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)
"""The page's policy: it loads nothing, runs no script, and styles only with its own stylesheet."""
_INLINE_IMAGES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Raster images shown inline (an SVG could carry script, so it is offered as a file instead)."""
_TEXT_TYPES: Final = frozenset({"application/json", "application/x-ndjson", "application/xml"})
_MAX_INLINE_BYTES: Final = 5_000_000
_MAX_TEXT_CHARS: Final = 200_000


def _e(text: object) -> str:
    return escape(str(text), quote=True)


@dataclass(frozen=True, slots=True)
class Integrity:
    """Whether a run's log checked out (from ``verify``), for the report's header.

    Attributes:
        ok: True if every check passed.
        summary: one line, e.g. ``hash chain intact over 12 events``.
        findings: what failed, one line each.
    """

    ok: bool
    summary: str
    findings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field that differs between a recorded event and its replay.

    Attributes:
        path: where, e.g. ``tool_calls[0].arguments.query``.
        expected: the recorded value (None when absent there).
        actual: the replayed value (None when absent there).
    """

    path: str
    expected: JsonValue
    actual: JsonValue


@dataclass(frozen=True, slots=True)
class DivergenceView:
    """The first event where a replay differs from the recording, as the report shows it.

    Attributes:
        seq: the seq of the first differing event.
        expected: the recorded event as JSON data (None: the replay went on past the recording).
        actual: the replayed event as JSON data (None: the replay stopped short).
        differences: the fields that differ.
        request_differences: how the model request rebuilt from each log differs, if it does.
    """

    seq: int
    expected: Mapping[str, JsonValue] | None
    actual: Mapping[str, JsonValue] | None
    differences: tuple[FieldChange, ...]
    request_differences: tuple[FieldChange, ...] = ()


def blob_hashes(events: Sequence[Event]) -> list[str]:
    """The sha256 of every image and artifact the events refer to, in order of appearance."""
    hashes: list[str] = []
    for event in events:
        if isinstance(event, SteerInjected):
            hashes += [image.sha256 for message in event.messages for image in message.images]
        elif isinstance(event, PostRunFinished):
            hashes += [artifact.sha256 for artifact in event.artifacts]
    return list(dict.fromkeys(hashes))


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CONTENT_SECURITY_POLICY)}">'
        '<meta name="referrer" content="no-referrer">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def render_report(
    events: Sequence[Event],
    *,
    blobs: Mapping[str, Blob] | None = None,
    explanation: Explanation | None = None,
    integrity: Integrity | None = None,
    divergence: DivergenceView | None = None,
    run_href: Callable[[str], str | None] | None = None,
) -> str:
    """The HTML report of one run.

    Args:
        events: the run's whole log, in seq order.
        blobs: the images and artifacts it refers to, by sha256 (see :func:`blob_hashes`);
            missing ones are named, not shown.
        explanation: ``why``'s explanation (:func:`executus.forensics.explain`); computed from
            ``events`` when not given.
        integrity: the verdict of ``verify`` on this run, if it was checked.
        divergence: the first divergence of a replay of this run, shown side by side.
        run_href: where another run's report is (for child and parent links), or None for none.

    Raises:
        EventOrderError: the log is empty or out of order.
    """
    explanation = explanation or explain(events)
    started = events[0]
    assert isinstance(started, RunStarted)  # explain() refused any other first event
    blobs = blobs or {}
    link = run_href or (lambda run_id: None)
    finished = next((e for e in events if isinstance(e, RunFinished)), None)
    status = finished.status if finished else "running"
    body = [
        '<header><p class="kicker">executus run report</p>',
        f'<h1><span class="agent">{_e(started.agent.name)}</span> '
        f'<span class="status {_e(status)}">{_e(status)}</span></h1>',
        f'<p class="run-id">run <code>{_e(started.run_id)}</code> · started '
        f"{_e(format_clock(started.at, date=True))} UTC</p></header>",
        _why(explanation),
        _integrity(integrity),
        _divergence(divergence) if divergence is not None else "",
        '<section id="timeline"><h2>Timeline</h2>',
        render_timeline(events),
        "</section>",
        _facts(events, finished, link),
        _attachments(events, blobs),
        '<section id="events"><h2>Events</h2>',
        *(_panel(event, started.at, blobs, link) for event in events),
        "</section>",
        "<footer>Generated from the run's event log by executus. Offline and self-contained: "
        "this page loads nothing and runs no script.</footer>",
    ]
    return _page(f"{started.agent.name} · {started.run_id} · {status}", "".join(body))


def _seq_links(seqs: Sequence[int]) -> str:
    return ", ".join(f'<a href="#seq-{seq}">{seq}</a>' for seq in seqs)


def _why(explanation: Explanation) -> str:
    out = [f'<section id="why"><h2>Why it ended so</h2><p class="headline">{_e(explanation.headline)}</p>']
    for section, title in SECTION_TITLES.items():
        statements = explanation.section(section)
        if not statements:
            continue
        out.append(f"<h3>{_e(title)}</h3><ul>")
        for statement in statements:
            cited = (
                f' <span class="cites">(seq {_seq_links(statement.seqs)})</span>' if statement.seqs else ""
            )
            out.append(f"<li>{_e(statement.text)}{cited}</li>")
        out.append("</ul>")
    out.append("</section>")
    return "".join(out)


def _integrity(integrity: Integrity | None) -> str:
    if integrity is None:
        return (
            '<section id="integrity" class="integrity unknown"><h2>Integrity</h2>'
            "<p>Not checked for this report (see <code>executus verify</code>).</p></section>"
        )
    verdict = "verified" if integrity.ok else "FAILED"
    findings = "".join(f"<li>{_e(finding)}</li>" for finding in integrity.findings)
    return (
        f'<section id="integrity" class="integrity {"ok" if integrity.ok else "failed"}">'
        f"<h2>Integrity: {verdict}</h2><p>{_e(integrity.summary)}</p>"
        f"{f'<ul>{findings}</ul>' if findings else ''}</section>"
    )


def _json_text(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _divergence(view: DivergenceView) -> str:
    expected, actual = view.expected or {}, view.actual or {}
    changed = {change.path.split(".")[0].split("[")[0] for change in view.differences}
    rows = []
    for key in sorted(set(expected) | set(actual)):
        recorded = _json_text(expected[key]) if key in expected else "(absent)"
        replayed = _json_text(actual[key]) if key in actual else "(absent)"
        marked = ' class="changed"' if key in changed or recorded != replayed else ""
        rows.append(
            f"<tr{marked}><th>{_e(key)}</th><td><pre>{_e(recorded)}</pre></td><td><pre>{_e(replayed)}</pre></td></tr>"
        )
    kinds = f"recorded {expected.get('kind', '(nothing)')}, replayed {actual.get('kind', '(nothing)')}"
    out = [
        f'<section id="divergence"><h2>Replay diverged at <a href="#seq-{view.seq}">seq {view.seq}</a></h2>',
        f"<p>{_e(kinds)}</p>",
        _changes_table("field-differences", "Field differences", view.differences),
        _changes_table(
            "request-differences",
            "The model request differs (rebuilt from each log)",
            view.request_differences,
        ),
        '<table class="side-by-side"><thead><tr><th>field</th><th>recorded</th>',
        "<th>replayed</th></tr></thead>",
        f"<tbody>{''.join(rows)}</tbody></table></section>",
    ]
    return "".join(out)


def _changes_table(table_id: str, title: str, changes: Sequence[FieldChange]) -> str:
    if not changes:
        return ""
    rows = "".join(
        f"<tr><th><code>{_e(c.path)}</code></th><td><pre>{_e(_json_text(c.expected))}</pre></td>"
        f"<td><pre>{_e(_json_text(c.actual))}</pre></td></tr>"
        for c in changes
    )
    return (
        f'<h3>{_e(title)}</h3><table class="diff" id="{table_id}"><thead><tr><th>path</th><th>recorded</th>'
        f"<th>replayed</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _run_link(run_id: str, link: Callable[[str], str | None]) -> str:
    href = link(run_id)
    code = f"<code>{_e(run_id)}</code>"
    return f'<a class="run-link" href="{_e(href)}">{code}</a>' if href else code


def _facts(events: Sequence[Event], finished: RunFinished | None, link: Callable[[str], str | None]) -> str:
    started = events[0]
    assert isinstance(started, RunStarted)
    agent = started.agent
    rows: list[tuple[str, str]] = [
        ("agent", _e(agent.name)),
        ("model", _e(agent.model)),
        ("input", _e(started.input)),
        ("caller", _e(started.caller_id or "-")),
        (
            "limits",
            _e(f"max_iterations {agent.max_iterations}")
            + (_e(f", max_runtime {format_duration(agent.max_runtime)}") if agent.max_runtime else ""),
        ),
        ("tools", _e(", ".join(tool.name for tool in agent.tools) or "none")),
        ("executor", _e(started.executor_version)),
    ]
    if started.parent_run_id:
        rows.append(("parent run", _run_link(started.parent_run_id, link)))
    children = [e.child_run_id for e in events if isinstance(e, ChildRunStarted)]
    if children:
        rows.append(("child runs", ", ".join(_run_link(child, link) for child in children)))
    if finished is not None:
        usage = finished.usage
        rows += [
            ("duration", _e(format_duration(finished.duration))),
            ("steps", _e(finished.steps)),
            ("tokens", _e(f"{usage.input_tokens} in, {usage.output_tokens} out")),
        ]
        if finished.output is not None:
            rows.append(("output", _e(finished.output)))
        if finished.error is not None:
            rows.append(("error", _e(finished.error)))
    cells = "".join(f"<tr><th>{_e(name)}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<section id="facts"><h2>The run</h2><table class="facts">{cells}</table></section>'


def _image(sha256: str, blobs: Mapping[str, Blob], alt: str) -> str:
    blob = blobs.get(sha256)
    if blob is None:
        return f'<p class="missing">image {_e(sha256[:12])}… is not in the store</p>'
    if blob.media_type not in _INLINE_IMAGES or len(blob.data) > _MAX_INLINE_BYTES:
        return _download(alt, blob)
    data = base64.b64encode(blob.data).decode("ascii")
    return f'<img class="inline" alt="{_e(alt)}" src="data:{blob.media_type};base64,{data}">'


def _download(name: str, blob: Blob) -> str:
    size = f"{len(blob.data)} bytes, {blob.media_type}"
    if len(blob.data) > _MAX_INLINE_BYTES:
        return f'<p class="missing">{_e(name)} ({_e(size)}) is too large to inline</p>'
    # Always as an opaque download: never a type the browser would render or run.
    data = base64.b64encode(blob.data).decode("ascii")
    return (
        f'<p><a class="download" download="{_e(name)}" href="data:application/octet-stream;base64,{data}">'
        f"download {_e(name)}</a> ({_e(size)})</p>"
    )


def _artifact(artifact: ArtifactRef, blobs: Mapping[str, Blob]) -> str:
    blob = blobs.get(artifact.sha256)
    header = (
        f'<h3 class="artifact-name">{_e(artifact.name)}</h3>'
        f'<p class="quiet">{_e(artifact.media_type)}, {artifact.size} bytes</p>'
    )
    if blob is None:
        return f'<div class="artifact">{header}<p class="missing">not in the store</p></div>'
    if blob.media_type in _INLINE_IMAGES:
        return f'<div class="artifact">{header}{_image(artifact.sha256, blobs, artifact.name)}</div>'
    if blob.media_type.startswith("text/") or blob.media_type in _TEXT_TYPES:
        text = blob.data.decode("utf-8", errors="replace")
        cut = text if len(text) <= _MAX_TEXT_CHARS else text[:_MAX_TEXT_CHARS] + "\n… (cut)"
        return f'<div class="artifact">{header}<pre class="artifact-text">{_e(cut)}</pre></div>'
    return f'<div class="artifact">{header}{_download(artifact.name, blob)}</div>'


def _attachments(events: Sequence[Event], blobs: Mapping[str, Blob]) -> str:
    out = []
    for event in events:
        if isinstance(event, SteerInjected):
            for message in event.messages:
                for image in message.images:
                    out.append(_figure(event.seq, message.text, image, blobs))
        elif isinstance(event, PostRunFinished):
            out += [_artifact(artifact, blobs) for artifact in event.artifacts]
    if not out:
        return ""
    return f'<section id="attachments"><h2>Images and artifacts</h2>{"".join(out)}</section>'


def _figure(seq: int, text: str, image: ImagePart, blobs: Mapping[str, Blob]) -> str:
    return (
        f"<figure>{_image(image.sha256, blobs, text)}<figcaption>{_e(text)} "
        f'(<a href="#seq-{seq}">seq {seq}</a>)</figcaption></figure>'
    )


def _panel(
    event: Event, start: datetime, blobs: Mapping[str, Blob], link: Callable[[str], str | None]
) -> str:
    summary, tone = describe_event(event)
    offset = format_duration((event.at - start).total_seconds())
    extra = ""
    if isinstance(event, ChildRunStarted):
        extra = f"<p>child run {_run_link(event.child_run_id, link)}</p>"
    elif isinstance(event, SteerInjected):
        extra = "".join(
            _figure(event.seq, m.text, image, blobs) for m in event.messages for image in m.images
        )
    payload = _json_text(encode_event(event))
    # The link target sits inside the panel: following a link to it opens the panel, no script.
    return (
        f'<details class="event {_e(tone)}" id="event-{event.seq}"><summary>'
        f'<span class="seq">{event.seq}</span><span class="offset">+{_e(offset)}</span>'
        f'<span class="kind">{_e(event.kind)}</span><span class="summary">{_e(summary)}</span></summary>'
        f'<div class="payload" id="seq-{event.seq}">{extra}<pre>{_e(payload)}</pre></div></details>'
    )


def render_index(summaries: Sequence[RunSummary], hrefs: Mapping[str, str]) -> str:
    """An index page: one row per run, linking to its report.

    Args:
        summaries: the runs, in the order to list them.
        hrefs: each run's report, by run id (relative to the index).
    """
    rows = []
    for run in summaries:
        duration = (
            format_duration((run.finished_at - run.started_at).total_seconds()) if run.finished_at else "-"
        )
        href = hrefs.get(run.run_id)
        name = (
            f'<a href="{_e(href)}"><code>{_e(run.run_id)}</code></a>'
            if href
            else f"<code>{_e(run.run_id)}</code>"
        )
        rows.append(
            f"<tr><td>{name}</td><td>{_e(run.agent)}</td>"
            f'<td><span class="status {_e(run.status)}">{_e(run.status)}</span></td>'
            f"<td>{_e(format_clock(run.started_at, date=True))}</td><td>{_e(duration)}</td>"
            f"<td>{run.steps}</td><td>{run.input_tokens + run.output_tokens}</td>"
            f"<td>{_e(run.end_cause or '')}</td></tr>"
        )
    body = (
        '<header><p class="kicker">executus run reports</p>'
        f"<h1>{len(summaries)} run{'s' if len(summaries) != 1 else ''}</h1></header>"
        '<section id="runs"><table class="index"><thead><tr><th>run</th><th>agent</th><th>status</th>'
        "<th>started (UTC)</th><th>duration</th><th>steps</th><th>tokens</th><th>why it ended</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )
    return _page("executus run reports", body)
