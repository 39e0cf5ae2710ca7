"""Secrets redacted before they are written: a :class:`Redactor` and the store wrappers that apply it.

The executor redacts by default: it wraps the writer it records through in a
:class:`RedactingWriter` with a :class:`Redactor` of the built-in detectors (keyed by
``$EXECUTUS_REDACTION_KEY``, else a public default key); ``Executor(redaction=...)`` takes your
own, ``redaction=None`` turns it off (tests and benchmarks only). Every event is scanned before
it is encoded or hashed, and each secret becomes ``[REDACTED:<rule>:<fingerprint>]``. A
:class:`RedactingStore` applies a redactor to any store's appends.
The :data:`BUILTIN_DETECTORS` are always on; your rules can only add to them:
:class:`PatternRule` (a regex), :class:`FieldRule` (the whole value at a field path) and
:class:`FunctionRule` (a callable that names the secrets in a string). Where a rule fired (event,
field path, rule; never the value) is a :class:`Redaction`. Example::

    from executus import Executor
    from executus.redaction import PatternRule, Redactor

    redactor = Redactor(key, [PatternRule("customer_id", r"CUST-\\d{6}")])
    executor = Executor(open_store(), redaction=redactor)
"""

from executus._redact import BUILTIN_DETECTORS, FieldRule, FunctionRule, PatternRule, Redaction, Redactor
from executus._redacting import RedactingStore, RedactingWriter

__all__ = [
    "BUILTIN_DETECTORS",
    "FieldRule",
    "FunctionRule",
    "PatternRule",
    "RedactingStore",
    "RedactingWriter",
    "Redaction",
    "Redactor",
]
