"""What the client raises. A decision that halts the run raises a `RunHalted` carrying it;
a request the server refused raises `LeverError` with the server's words."""

from __future__ import annotations

from ._model import Decision


class LeverError(Exception):
    """A request Lever did not judge, or could not be reached for."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status, when the server answered.
        self.status = status


class StepRejected(LeverError):
    """The event was rejected (`action: "rejected"`): a missing, unknown or invalid field,
    an unknown or ended run. Nothing was counted."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(f"rejected: {decision.reason}", 422)
        self.decision = decision


class RunHalted(Exception):
    """The run may not go on. `decision` is the answer that says so."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(str(decision))
        self.decision = decision


class RunPaused(RunHalted):
    """A `pause` tripped (or a step of a paused run was refused): the run waits for an
    authorised `resume`; `Run.wait_resumed` polls for it."""


class RunStopped(RunHalted):
    """A `stop` tripped, or a step of a stopped run was refused: the run is over."""


class RunKilled(RunHalted):
    """A `kill` tripped, or a step of a killed run was refused: the run is over at once."""


def halted(decision: Decision) -> RunHalted | None:
    """The exception a decision raises, if it halts the run."""
    action, reason = decision.action, decision.reason
    if action == "kill" or (action == "refused" and reason == "run_killed"):
        return RunKilled(decision)
    if action == "stop" or (action == "refused" and reason == "run_stopped"):
        return RunStopped(decision)
    if action == "pause" or (action == "refused" and reason == "run_paused"):
        return RunPaused(decision)
    return None
