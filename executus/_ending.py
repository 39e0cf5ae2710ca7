"""How a run ends once its outcome is decided: the session's post-run hook and cleanup, the
result, and the ports.

Neither the hook nor the cleanup can fail the run or leave it ``running``: whatever they raise
(``CancelledError`` that nobody asked for included) is recorded in ``post_run_finished`` and
logged, and the cleanup runs even when the hook failed. The ports (delivery, budget) are
called whatever happened, a store failure included; their failures are logged. The live driver
and the replayer build a run's :class:`~executus.Result` alike (:func:`result_of`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from pydantic import JsonValue, TypeAdapter

from executus._agent import Artifact, BudgetPort, DeliveryPort, PostRun, Result, Session
from executus._clock import Clock
from executus._effects import Outcome
from executus._events import ArtifactRef
from executus._inputs import PostRunDone
from executus._recorder import Recorder
from executus._state import RunState
from executus._storable import clean_json, clean_text
from executus._toolcalls import error_info, requested_cancellation

__all__ = ["call_ports", "post_run", "result_of"]

logger = logging.getLogger("executus")
_METADATA: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(dict[str, JsonValue])
"""What a post-run hook's metadata must be: JSON (anything else is the hook's error)."""


async def post_run(
    session: Session, state: RunState, outcome: Outcome, recorder: Recorder, clock: Clock
) -> tuple[PostRunDone, tuple[Artifact, ...]]:
    """Run the session's post-run hook, then its cleanup, and store the hook's artifacts.

    Returns:
        The core's input saying how it went (artifacts by reference, metadata, errors), and
        the artifacts as the hook made them (for the :class:`~executus.Result`).

    Raises:
        asyncio.CancelledError: only when the driver cancelled the hook or the cleanup.
    """
    run_id = state.run_id
    artifacts: tuple[Artifact, ...] = ()
    metadata: dict[str, JsonValue] = {}
    post_run_error = cleanup_error = None
    try:
        made = await session.post_run(list(state.transcript), outcome.output, outcome.error)
        hook = made if isinstance(made, PostRun) else PostRun()
        artifacts = tuple(hook.artifacts)
        metadata = _METADATA.validate_python(clean_json(dict(hook.metadata)))
    except (Exception, asyncio.CancelledError) as error:
        if isinstance(error, asyncio.CancelledError) and requested_cancellation():
            raise
        logger.exception("run %s: post_run failed", run_id)
        post_run_error = error_info(error)
    try:
        await session.cleanup()
    except (Exception, asyncio.CancelledError) as error:
        if isinstance(error, asyncio.CancelledError) and requested_cancellation():
            raise
        logger.exception("run %s: session cleanup failed", run_id)
        cleanup_error = error_info(error)
    refs = []
    for artifact in artifacts:
        # The reference names what the store keeps: a text artifact's redacted bytes.
        kept = artifact.data
        if recorder.failure is None:
            try:
                kept = (await recorder.put_blob(artifact.data, artifact.media_type)).data
            except Exception as error:
                logger.error("run %s: the store failed to keep an artifact: %s", run_id, error)
                recorder.failure = error
        refs.append(
            ArtifactRef(
                name=clean_text(artifact.name),
                media_type=clean_text(artifact.media_type),
                sha256=hashlib.sha256(kept).hexdigest(),
                size=len(kept),
            )
        )
    done = PostRunDone(
        at=clock.now(),
        ran=True,
        artifacts=tuple(refs),
        metadata=metadata,
        error=post_run_error,
        cleanup_error=cleanup_error,
    )
    return done, artifacts


async def call_ports(
    result: Result, caller_id: str | None, delivery: DeliveryPort | None, budget: BudgetPort | None
) -> None:
    """Deliver the result and commit the caller's budget; a port's failure is logged, never raised."""
    if delivery is not None:
        try:
            await delivery.deliver(result)
        except Exception:
            logger.exception("run %s: delivery failed", result.run_id)
    if budget is not None:
        try:
            await budget.commit(caller_id, result.duration)
        except Exception:
            logger.exception("run %s: budget commit failed", result.run_id)


def result_of(outcome: Outcome, state: RunState, artifacts: tuple[Artifact, ...]) -> Result:
    """What the caller gets for a decided run; the live driver and the replayer build it alike."""
    return Result(
        run_id=state.run_id,
        status=outcome.status,
        output=outcome.output,
        error=outcome.error,
        steps=state.steps,
        usage=state.usage,
        duration=state.duration if state.duration is not None else 0.0,
        state=state,
        artifacts=artifacts,
        metadata=dict(state.post_run_metadata),
    )
