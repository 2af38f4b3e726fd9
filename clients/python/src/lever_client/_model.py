"""Decisions as Lever answers them: every event gets one, in the format `docs/decisions.md`
describes. Money and token counts stay exact (`Decimal`), as Lever computes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class Signal:
    """A threshold crossing (`near`, `breach`), an evaluation `error` or a `conflict`."""

    kind: str
    policy: str
    version: int
    policy_hash: str
    limit: str | None
    observed: Decimal | None
    limit_value: Decimal | None
    percent: Decimal | None
    error: str | None = None
    conflict: str | None = None
    budget: dict[str, Any] | None = None

    @staticmethod
    def from_json(v: dict[str, Any]) -> Signal:
        return Signal(
            kind=v["kind"],
            policy=v["policy"],
            version=int(v["version"]),
            policy_hash=v["policy_hash"],
            limit=v.get("limit"),
            observed=_decimal(v.get("observed")),
            limit_value=_decimal(v.get("limit_value")),
            percent=_decimal(v.get("percent")),
            error=v.get("error"),
            conflict=v.get("conflict"),
            budget=v.get("budget"),
        )

    def __str__(self) -> str:
        if self.kind in ("near", "breach"):
            return (
                f"{self.kind.upper()} of {self.limit} ({self.policy} v{self.version}): "
                f"{self.observed} of {self.limit_value}"
            )
        what = self.error or self.conflict or ""
        return f"{self.kind} in {self.policy}: {what}".rstrip(": ")


@dataclass(frozen=True)
class Alert:
    """An alert one signal raised to one channel (`suppressed` by its throttling)."""

    policy: str
    limit: str
    kind: str
    channel: str
    suppressed: bool
    why: str | None

    @staticmethod
    def from_json(v: dict[str, Any]) -> Alert:
        return Alert(
            policy=v["policy"],
            limit=v["limit"],
            kind=v["kind"],
            channel=v["channel"],
            suppressed=bool(v["suppressed"]),
            why=v.get("why"),
        )


@dataclass(frozen=True)
class OverrideStatus:
    """An override request's status after an override or approval."""

    status: str
    id: str | None
    rule: str | None
    until: str | None
    why: str | None

    @staticmethod
    def from_json(v: dict[str, Any]) -> OverrideStatus:
        return OverrideStatus(
            status=v["status"], id=v.get("id"), rule=v.get("rule"), until=v.get("until"),
            why=v.get("why"),
        )  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """Lever's answer to one event: what the run does now (`action`) and why."""

    run_id: str | None
    seq: int | None
    ts: str | None
    event: str | None
    action: str
    reason: str | None
    signals: list[Signal]
    alerts: list[Alert]
    budgets: list[dict[str, Any]]
    override: OverrideStatus | None
    snapshot: str | None
    artifact: str | None
    #: The answer as the server sent it.
    raw: dict[str, Any] = field(repr=False, compare=False)
    #: True when the server answered a retried step with its stored decision.
    replayed: bool = field(default=False, compare=False)

    @staticmethod
    def from_json(v: dict[str, Any], replayed: bool = False) -> Decision:
        override = v.get("override")
        return Decision(
            run_id=v.get("run_id"),
            seq=v.get("seq"),
            ts=v.get("ts"),
            event=v.get("event"),
            action=v["action"],
            reason=v.get("reason"),
            signals=[Signal.from_json(s) for s in v.get("signals", [])],
            alerts=[Alert.from_json(a) for a in v.get("alerts", [])],
            budgets=list(v.get("budgets", [])),
            override=OverrideStatus.from_json(override) if override else None,
            snapshot=v.get("snapshot"),
            artifact=v.get("artifact"),
            raw=v,
            replayed=replayed,
        )

    @property
    def halts(self) -> bool:
        """Whether the run may not go on: paused, stopped or killed (or refused for it)."""
        return self.action in ("pause", "stop", "kill") or (
            self.action == "refused" and self.reason in ("run_paused", "run_stopped", "run_killed")
        )

    def __str__(self) -> str:
        head = f"{self.event} #{self.seq} of {self.run_id}: {self.action}"
        if self.reason:
            head += f" ({self.reason})"
        return "; ".join([head, *(str(s) for s in self.signals)])
