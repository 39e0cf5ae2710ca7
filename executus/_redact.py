"""Redaction: secrets replaced by stable placeholders before an event is encoded, hashed or stored.

A :class:`Redactor` scans every string in an event's body with the built-in detectors (API keys
of OpenAI, Anthropic, AWS, GitHub, Slack and Google, bearer tokens, passwords in URLs and in
libpq connection strings, private key blocks, JWTs) and any user rules, which can only add to
them: :class:`PatternRule` (a regex), :class:`FieldRule` (a field path, its whole value) and
:class:`FunctionRule` (a callable that names the secrets in a string).

A secret becomes ``[REDACTED:<rule>:<fingerprint>]``, the fingerprint being the first 16 hex
digits of HMAC-SHA256(secret key, value). The same value under the same key always gives the
same placeholder, so a replay, a diff or a ``why`` still sees "the same token" where it was the
same; without the key the value cannot be guessed back from it. The key is the one given, else
the environment's ``EXECUTUS_REDACTION_KEY``, else :data:`DEFAULT_REDACTION_KEY`, which is
public: values stay hidden, but anyone can check a guess against a fingerprint under it, and
equal secrets are linkable across every deployment that left the key unset. The placeholder names the rule
that fired where the value was, and that is the whole record: the value itself is never kept.

Redacting a log that is already redacted changes nothing (placeholders are left alone), so the
same redactor can sit at a store's door and at a replay's.

Pure: standard library and the event models only. :mod:`executus._redacting` puts it at the
executor's write port.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from executus._errors import ConfigurationError
from executus._events import ENVELOPE_KEYS, Event, ModelRequested, decode_event, encode_event
from executus._state import RunState, apply, rebuild

__all__ = [
    "BUILTIN_DETECTORS",
    "DEFAULT_REDACTION_KEY",
    "REDACTION_KEY_VARIABLE",
    "FieldRule",
    "FunctionRule",
    "PatternRule",
    "Redaction",
    "Redactor",
]

PLACEHOLDER: Final = re.compile(r"\[REDACTED:[a-z0-9_.-]+:[0-9a-f]{16}\]")
"""What a redacted value becomes; text that already is one is never redacted again."""
_RULE_NAME: Final = re.compile(r"^[a-z0-9_.-]+$")
REDACTION_KEY_VARIABLE: Final = "EXECUTUS_REDACTION_KEY"
"""The environment variable a :class:`Redactor` given no key reads its key from (UTF-8)."""
DEFAULT_REDACTION_KEY: Final = b"executus-public-default-redaction-key"
"""The key when none is given or configured. It is published here, so it hides values but does
not make fingerprints unguessable or unlinkable: set ``EXECUTUS_REDACTION_KEY`` for that."""


@dataclass(frozen=True, slots=True)
class PatternRule:
    """Redact what a regular expression matches (its ``group``, by default the whole match).

    Attributes:
        name: names the rule in placeholders: lower case letters, digits, ``_ . -``.
        pattern: the regular expression.
        group: which group is the secret (0: the whole match).
    """

    name: str
    pattern: str | re.Pattern[str]
    group: int = 0


@dataclass(frozen=True, slots=True)
class FieldRule:
    """Redact the whole string at a field path, e.g. ``tool_started.arguments.password``.

    The path is the event kind, then the keys (list items by index), joined by dots; ``*``
    matches anything (``*.arguments.api_key``, ``run_started.input``).
    """

    name: str
    path: str


@dataclass(frozen=True, slots=True)
class FunctionRule:
    """Redact the substrings ``find(path, text)`` returns for each string of an event."""

    name: str
    find: Callable[[str, str], Iterable[str]]


Rule = PatternRule | FieldRule | FunctionRule

BUILTIN_DETECTORS: Final[tuple[PatternRule, ...]] = (
    PatternRule(
        "private_key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----"
    ),
    PatternRule("anthropic_api_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    PatternRule("openai_api_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    PatternRule("aws_access_key_id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    PatternRule(
        "aws_secret_access_key",
        r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        1,
    ),
    PatternRule("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b"),
    PatternRule("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    PatternRule("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
    PatternRule("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
    PatternRule("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}"),
    PatternRule("bearer_token", r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]{12,}=*)", 1),
    PatternRule("url_password", r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]+:([^\s@/?#]+)@", 1),
    PatternRule("libpq_password", r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s'\";]+)", 1),
)
"""The detectors every :class:`Redactor` applies, in this order (the first to claim text wins)."""

_NO_FREE_TEXT: Final = frozenset({"model_requested"})
"""Kinds whose bodies are numbers and a hex fingerprint only: nothing there to redact."""
_ANCHORS: Final[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "private_key": (("PRIVATE KEY",), ()),
    "anthropic_api_key": (("sk-ant-",), ()),
    "openai_api_key": (("sk-",), ()),
    "aws_access_key_id": (("AKIA", "ASIA"), ()),
    "aws_secret_access_key": ((), ("aws_secret", "awssecret")),
    "github_token": (("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), ()),
    "slack_token": (("xox",), ()),
    "slack_webhook": (("://",), ()),
    "google_api_key": (("AIza",), ()),
    "jwt": (("eyJ",), ()),
    "bearer_token": ((), ("bearer",)),
    "url_password": (("://",), ()),
    "libpq_password": ((), ("password",)),
}
"""Text each built-in detector cannot match without: as it is, and in ``str.casefold`` form
(for the case-insensitive ones; casefold, unlike lower, also maps the look-alikes that an
``(?i)`` pattern matches, such as U+017F for ``s``). A detector runs on a string only when one
of its anchors is in it, and an event whose JSON holds no anchor is not walked at all: substring
tests, not one regex, because Python's regex engine tries every alternative at every position,
which cost ten times the tests on a typical event. A detector missing here always runs."""
_ALL_EXACT: Final = {anchor for exact, _ in _ANCHORS.values() for anchor in exact}
_EXACT_ANCHORS: Final = tuple(sorted(a for a in _ALL_EXACT if not any(b != a and b in a for b in _ALL_EXACT)))
"""The exact anchors an event's text is tested for: one that holds another (``sk-ant-``) is not."""
_FOLDED_ANCHORS: Final = tuple(dict.fromkeys(a for _, folded in _ANCHORS.values() for a in folded))
_PLACEHOLDER_START: Final = "[REDACTED:"
_MAX_PATHS_KEPT: Final = 4096


_NOT_TEXT: Final = ("image/", "audio/", "video/", "font/")
"""Blobs of these media types are kept as they are (an image is referenced by its digest)."""
_TEXT_TYPES: Final = frozenset(
    {"application/json", "application/x-ndjson", "application/xml", "application/yaml", "application/x-yaml"}
)


def _is_text(media_type: str) -> bool:
    essence = media_type.partition(";")[0].strip().lower()
    return essence.startswith("text/") or essence in _TEXT_TYPES or essence.endswith(("+json", "+xml"))


def _may_hold_secrets(text: str) -> bool:
    """Whether any built-in detector could match in ``text`` (a loop: cheaper than ``any``)."""
    for anchor in _EXACT_ANCHORS:
        if anchor in text:
            return True
    folded = text.casefold()
    for anchor in _FOLDED_ANCHORS:  # noqa: SIM110 - a loop costs less than any() of a generator
        if anchor in folded:
            return True
    return False


def _anchored(text: str, folded: str, exact: tuple[str, ...], case_free: tuple[str, ...]) -> bool:
    for anchor in exact:
        if anchor in text:
            return True
    for anchor in case_free:  # noqa: SIM110 - as above
        if anchor in folded:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Redaction:
    """Where a rule fired: the event, the field path and the rule, never the value."""

    run_id: str
    seq: int
    path: str
    rule: str


class Redactor:
    """Replaces secrets in events with HMAC placeholders; remembers nothing but fingerprint state.

    Args:
        secret: the HMAC key (at least 16 bytes); None: ``$EXECUTUS_REDACTION_KEY``, else the
            public :data:`DEFAULT_REDACTION_KEY`. Keep it as secret as the values it hides:
            with it, a guessed value can be checked against a placeholder. Runs redacted under
            the same key give equal placeholders for equal values.
        rules: user rules, applied after the built-in detectors.

    Raises:
        ConfigurationError: a key shorter than 16 bytes, or a rule name placeholders cannot carry.
    """

    def __init__(self, secret: bytes | None = None, rules: Sequence[Rule] = ()) -> None:
        source = "a redaction secret"
        if secret is None:
            configured = os.environ.get(REDACTION_KEY_VARIABLE)
            source = f"${REDACTION_KEY_VARIABLE}"
            secret = DEFAULT_REDACTION_KEY if configured is None else configured.encode()
        if len(secret) < 16:
            raise ConfigurationError(f"{source} must be at least 16 bytes")
        for rule in rules:
            if not _RULE_NAME.match(rule.name):
                raise ConfigurationError(f"redaction rule name {rule.name!r}: use a-z, 0-9, _ . -")
        self._secret = secret
        patterns = [*BUILTIN_DETECTORS, *(rule for rule in rules if isinstance(rule, PatternRule))]
        built_in = len(BUILTIN_DETECTORS)
        self._patterns = tuple(
            (
                rule.name,
                re.compile(rule.pattern),
                rule.group,
                _ANCHORS.get(rule.name) if n < built_in else None,
            )
            for n, rule in enumerate(patterns)
        )
        self._fields = tuple(rule for rule in rules if isinstance(rule, FieldRule))
        self._field_of_path: dict[str, FieldRule | None] = {}
        """The field rule for each path seen (fnmatch per string was most of a walk's cost)."""
        self._functions = tuple(rule for rule in rules if isinstance(rule, FunctionRule))
        self._always_walk = (
            len(patterns) > len(BUILTIN_DETECTORS)
            or bool(self._fields or self._functions)
            or any(rule.name not in _ANCHORS for rule in BUILTIN_DETECTORS)
        )

    def __repr__(self) -> str:
        counts = (
            f"{len(self._patterns)} patterns, {len(self._fields)} fields, {len(self._functions)} functions"
        )
        return f"Redactor({counts})"  # never the key

    def placeholder(self, rule: str, value: str) -> str:
        """The placeholder ``value`` becomes when ``rule`` finds it."""
        digest = hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:16]
        return f"[REDACTED:{rule}:{digest}]"

    def redact_text(self, text: str, path: str = "") -> tuple[str, list[tuple[str, str]]]:
        """``text`` with every secret replaced, and (path, rule) for each replacement."""
        spans: list[tuple[int, int, str]] = []  # start, end, rule; first claim wins
        protected = (
            [(m.start(), m.end()) for m in PLACEHOLDER.finditer(text)] if _PLACEHOLDER_START in text else []
        )

        def claim(start: int, end: int, rule: str) -> None:
            if start == end or any(
                s < end and start < e for s, e in (*protected, *((a, b) for a, b, _ in spans))
            ):
                return
            spans.append((start, end, rule))

        folded: str | None = None
        patterns = self._patterns if _may_hold_secrets(text) else self._patterns[len(BUILTIN_DETECTORS) :]
        for name, pattern, group, anchors in patterns:
            if anchors is not None:
                exact, case_free = anchors
                if case_free and folded is None:
                    folded = text.casefold()
                if not _anchored(text, folded or "", exact, case_free):
                    continue
            for match in pattern.finditer(text):
                claim(match.start(group), match.end(group), name)
        for function in self._functions:
            for secret in function.find(path, text):
                if not secret:
                    continue
                start = text.find(secret)
                while start >= 0:
                    claim(start, start + len(secret), function.name)
                    start = text.find(secret, start + len(secret))
        if not spans:
            return text, []
        spans.sort()
        pieces, last = [], 0
        for start, end, rule in spans:
            pieces += [text[last:start], self.placeholder(rule, text[start:end])]
            last = end
        pieces.append(text[last:])
        return "".join(pieces), [(path, rule) for _, _, rule in spans]

    def redact_blob(self, data: bytes, media_type: str) -> tuple[bytes, list[str]]:
        """Content as it may be stored (an artifact), and the rules that fired in it.

        Text is redacted like an event's strings (field rules aside: a blob has no fields):
        content of a text media type (``text/*``, JSON, XML, YAML), read as UTF-8 with any
        other byte kept as it is, and content of any other type but image, audio, video and
        font that is valid UTF-8. Everything else is returned unchanged.
        """
        if media_type.lower().startswith(_NOT_TEXT):
            return data, []
        try:
            text = data.decode("utf-8", "strict" if not _is_text(media_type) else "surrogateescape")
        except UnicodeDecodeError:
            return data, []
        redacted, found = self.redact_text(text, "blob")
        if not found:
            return data, []
        return redacted.encode("utf-8", "surrogateescape"), [rule for _, rule in found]

    def redact(self, event: Event) -> tuple[Event, list[Redaction]]:
        """The event with its secrets replaced (the same object if there were none), and where."""
        if event.kind in _NO_FREE_TEXT or (
            not self._always_walk and not _may_hold_secrets(event.model_dump_json())
        ):
            return event, []
        data = encode_event(event)
        fired: list[tuple[str, str]] = []
        for key, value in data.items():
            if key not in ENVELOPE_KEYS:
                data[key] = self._walk(value, f"{event.kind}.{key}", fired)
        if not fired:
            return event, []
        return decode_event(data), [Redaction(event.run_id, event.seq, path, rule) for path, rule in fired]

    def _field_rule(self, path: str) -> FieldRule | None:
        try:
            return self._field_of_path[path]
        except KeyError:
            pass
        if len(self._field_of_path) >= _MAX_PATHS_KEPT:  # list indexes make paths without end
            self._field_of_path.clear()
        field = next((rule for rule in self._fields if fnmatch.fnmatchcase(path, rule.path)), None)
        self._field_of_path[path] = field
        return field

    def _walk(self, value: Any, path: str, fired: list[tuple[str, str]]) -> Any:
        if isinstance(value, str):
            field = self._field_rule(path) if self._fields else None
            if field is not None and not PLACEHOLDER.fullmatch(value) and value:
                fired.append((path, field.name))
                return self.placeholder(field.name, value)
            redacted, found = self.redact_text(value, path)
            fired.extend(found)
            return redacted
        if isinstance(value, dict):
            return {key: self._walk(item, f"{path}.{key}", fired) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(item, f"{path}.{index}", fired) for index, item in enumerate(value)]
        return value


class RunRedaction:
    """A redactor applied to a run's appends, keeping its recorded fingerprints replayable.

    A ``model_requested`` event carries the fingerprint of the request the live run made, over
    the real values; a replay folds the redacted log and computes its fingerprint over the
    placeholders. So once a run has had anything redacted, its requests are fingerprinted again
    here over the redacted transcript (a fold of the redacted events, kept per run), which is
    exactly what a replay computes. Runs with nothing redacted are left as recorded.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._clean: dict[str, list[Event] | None] = {}
        """Runs with nothing redacted yet: their (unchanged) events, folded only if that changes;
        None where the store can give them back (``history``), so no copy of the log is kept."""
        self._folded: dict[str, RunState] = {}
        """Runs with something redacted: the fold of their redacted events."""
        self.redactions: list[Redaction] = []
        """Every redaction made, for a caller that wants to report them (never the values)."""

    def batch(
        self,
        run_id: str,
        events: Sequence[Event],
        expected_seq: int,
        history: Callable[[], Sequence[Event]] | None = None,
    ) -> list[Event]:
        """The batch to store in place of ``events``.

        Args:
            run_id: the run appended to.
            events: the batch, as the executor made it.
            expected_seq: the seq the run's log ends at before the batch.
            history: the run's stored (already redacted) events, read when the run first needs
                a fold: its first redaction, or a run this object has not seen (a resume).
                Without it, the events of runs with nothing redacted are kept here instead.
        """
        known = run_id in self._clean or run_id in self._folded
        if expected_seq == 0 or not known:
            self._folded.pop(run_id, None)
            self._clean[run_id] = None if history is not None else []
        redacted: list[Event] = []
        for event in events:
            safe, found = self.redactor.redact(event)
            if found:
                self.redactions.extend(found)
                if run_id in self._clean:
                    self._fold(run_id, [*self._stored(run_id, expected_seq, history), *redacted])
            if run_id not in self._clean:
                state = self._folded.get(run_id)
                if (
                    state is not None
                    and isinstance(safe, ModelRequested)
                    and safe.fingerprint != state.fingerprint
                ):
                    safe = safe.model_copy(update={"fingerprint": state.fingerprint})
                self._folded[run_id] = apply(state, safe)
            redacted.append(safe)
        kept = self._clean.get(run_id)
        if kept is not None:
            kept.extend(redacted)
        if redacted and redacted[-1].kind == "run_finished":
            self._clean.pop(run_id, None)
            self._folded.pop(run_id, None)
        return redacted

    def _stored(
        self, run_id: str, expected_seq: int, history: Callable[[], Sequence[Event]] | None
    ) -> Sequence[Event]:
        """A clean run's events before this batch (taking it off the clean runs)."""
        kept = self._clean.pop(run_id)
        if kept is not None:
            return kept
        return history() if expected_seq and history is not None else []

    def forget(self, run_id: str) -> None:
        """Drop what is kept for a run (after a failed append: its next one starts from the store)."""
        self._clean.pop(run_id, None)
        self._folded.pop(run_id, None)

    def _fold(self, run_id: str, log: Sequence[Event]) -> None:
        if log:
            self._folded[run_id] = rebuild(log)
