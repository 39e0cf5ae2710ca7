"""Secrets redacted before they are written: a :class:`Redactor` and the store wrappers that apply it.

Wrap the store the executor writes through in a :class:`RedactingStore` (or an async
:class:`~executus.storage.EventWriter` in a :class:`RedactingWriter`): every event is scanned
before it is encoded or hashed, and each secret becomes ``[REDACTED:<rule>:<fingerprint>]``.
The :data:`BUILTIN_DETECTORS` are always on; your rules can only add to them:
:class:`PatternRule` (a regex), :class:`FieldRule` (the whole value at a field path) and
:class:`FunctionRule` (a callable that names the secrets in a string). Where a rule fired (event,
field path, rule; never the value) is a :class:`Redaction`. Example::

    from executus import Executor
    from executus.redaction import PatternRule, RedactingStore, Redactor

    redactor = Redactor(key, [PatternRule("customer_id", r"CUST-\\d{6}")])
    executor = Executor(RedactingStore(open_store(), redactor))
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
