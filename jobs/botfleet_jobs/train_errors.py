"""What a failed training says: :class:`TrainingError` (one readable message), out-of-memory
advice, and the readable message for what Ray Train raises when a worker fails."""

from __future__ import annotations

import re
import sys

from botfleet.errors import UserError, one_line

OOM_ADVICE = (
    "reduce batchSizePerWorker or blockSize (use gradientAccumulation to keep the batch),"
    " use zeroStage 3 or more workers, use bf16, or give the workers more memory"
)


class TrainingError(RuntimeError):
    """The training job failed; the message is one readable line (or a few) saying why."""


class UnusableInput(TrainingError, UserError):
    """What the request gives training cannot be used (its base model, its dataset): found
    before any worker starts, and the user's to fix (the CLI exits 2)."""


def is_out_of_memory(error: BaseException) -> bool:
    """torch.OutOfMemoryError on accelerators; on CPU the allocator raises a RuntimeError."""
    try:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(error, (RuntimeError, MemoryError)):
        text = str(error).lower()
        return isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    return False


def oom_error(error: BaseException, where: str) -> TrainingError:
    return TrainingError(f"out of memory {where}: {one_line(error, limit=300)}; {OOM_ADVICE}")


def describe_failure(error: BaseException) -> str:
    """A readable message for what ``trainer.fit()`` raised (Ray wraps worker errors)."""
    failures = getattr(error, "worker_failures", None)
    if failures:
        parts = []
        for rank in sorted(failures):
            cause = failures[rank]
            cause = getattr(cause, "_base_exc", cause)  # UserExceptionWithTraceback
            parts.append((rank, cause))
        # Ranks usually fail the same way (or the others fail *because* one did): show
        # the first TrainingError, else rank 0's error.
        ours = [p for p in parts if isinstance(p[1], TrainingError)]
        rank, cause = (ours or parts)[0]
        if isinstance(cause, TrainingError):
            return str(cause)
        if is_out_of_memory(cause):
            return str(oom_error(cause, f"on training worker {rank}"))
        return f"training worker {rank} failed: {_describe_cause(cause)}"
    controller = getattr(error, "controller_failure", None)
    if controller is not None:
        return f"training failed in Ray Train's controller: {_describe_cause(controller)}"
    return f"training failed: {_describe_cause(error)}"


def _describe_cause(cause: BaseException) -> str:
    name = type(cause).__name__
    inner = getattr(cause, "health_check_failure", None)  # WorkerHealthCheckFailedError
    text = one_line(cause if inner is None else inner, limit=sys.maxsize)  # searched whole below
    died = inner is not None or "ActorDied" in name or "ActorUnavailable" in name
    if died or "died unexpectedly" in text:
        # Ray's text is a page (actor ids, namespaces...): keep its exit detail.
        detail = re.search(r"Worker exit detail: ([^.]*\.?)", text)
        reason = detail.group(1).rstrip(".") if detail else text[:300]
        return f"the worker process died ({reason}); if the OS killed it for memory, {OOM_ADVICE}"
    return f"{name}: {one_line(text)}"
