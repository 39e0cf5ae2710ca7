"""For store implementers and auditors: the contract a store is held to, the pieces every store
shares, and what verifying a stored log reports.

A store keeps each run's events as an append-only, hash-chained log (listed through
:class:`RunQuery` as :class:`RunSummary` rows; large content as :class:`Blob` s). Implement
:class:`EventStore` (reads and synchronous appends; :class:`EventSink` is its write half) and
hand the executor an :class:`EventWriter` (the async write port; :class:`InlineWriter` wraps
any sink). The helpers keep every backend byte-for-byte compatible:

- :func:`check_batch` refuses a batch that is not the run's next events, before any write;
- :func:`event_json` is an event's canonical stored text, and :func:`chain_hash` chains it to
  the previous event's hash (:data:`GENESIS_HASH` before the first);
- :func:`event_json_and_body` / :func:`event_json_from_body` split that text into the envelope
  a SQL row keeps in columns and the body it stores, and join them back;
  :func:`decode_event_body` decodes a stored body;
- :func:`summarize` folds each appended event into the run's :class:`RunSummary` row;
- :func:`check_run` verifies a run from its rows as stored (:class:`StoredRow`); what is
  wrong comes back as :class:`Finding` s (each names a :data:`Problem`), and a whole
  verification as a :class:`VerifyReport`; :func:`seal_due` says when an append must also add
  a :class:`Seal` to the run ledger, as its :class:`SealPolicy` asks;
- a store raises :class:`ConcurrencyError` when another writer appended to the run first, and
  :class:`BlobNotFoundError` for a sha256 it does not hold.

Workers coordinate through :class:`RunLeases` (ownership of runs by :class:`Lease`, the work
queue of :class:`QueuedRun`, cancel requests; :class:`Claim`, :class:`Renewal` and
:class:`LeaseInfo` are its answers); a write port that also keeps leases off the event loop is
a :class:`LeaseWriter`. An append made with an ``epoch`` is fenced by the run's lease and
raises :class:`LeaseLostError` once another worker took the run over.

:class:`MemoryStore` is the reference implementation; ``tests/test_store_contract.py`` is the
contract suite every backend passes.
"""

from executus._audit import Finding, Problem, Seal, SealPolicy, StoredRow, VerifyReport, check_run, seal_due
from executus._errors import (
    BlobNotFoundError,
    ConcurrencyError,
    LeaseHeldError,
    LeaseLostError,
    RunExistsError,
)
from executus._events import canonical_json, decode_event_body
from executus._store import (
    GENESIS_HASH,
    Blob,
    Claim,
    EventSink,
    EventStore,
    EventWriter,
    InlineWriter,
    Lease,
    LeaseInfo,
    LeaseWriter,
    MemoryStore,
    QueuedRun,
    Renewal,
    RunLeases,
    RunQuery,
    RunSummary,
    chain_hash,
    check_batch,
    event_json,
    event_json_and_body,
    event_json_from_body,
    summarize,
)

__all__ = [
    "GENESIS_HASH",
    "Blob",
    "BlobNotFoundError",
    "Claim",
    "ConcurrencyError",
    "EventSink",
    "EventStore",
    "EventWriter",
    "Finding",
    "InlineWriter",
    "Lease",
    "LeaseHeldError",
    "LeaseInfo",
    "LeaseLostError",
    "LeaseWriter",
    "MemoryStore",
    "Problem",
    "QueuedRun",
    "Renewal",
    "RunExistsError",
    "RunLeases",
    "RunQuery",
    "RunSummary",
    "Seal",
    "SealPolicy",
    "StoredRow",
    "VerifyReport",
    "canonical_json",
    "chain_hash",
    "check_batch",
    "check_run",
    "decode_event_body",
    "event_json",
    "event_json_and_body",
    "event_json_from_body",
    "seal_due",
    "summarize",
]
