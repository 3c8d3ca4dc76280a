"""CI gates: ``--fail-on "crows_pairs.pct_stereotype > 60"`` makes a command exit 3 when the run crosses it.

A gate is ``SUITE.METRIC[GROUP] OP NUMBER``: ``METRIC`` is one of the suite result's ``metrics`` (the
names of the run's tidy frame, ``Run.frame()``), ``GROUP`` a group of that frame (default ``overall``),
``OP`` one of ``> >= < <= == !=``. The gate *fails* when the condition holds for the point estimate.
Gates are checked before the run starts (suite selected, metric known), so a typo costs no model time;
a gate whose estimate is missing after the run (a skipped suite, too few items) fails too, saying why:
a CI gate that cannot be read must not pass silently.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from biasaudit.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from biasaudit.suite import Suite

GATE_EXIT_CODE = 3
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}  # fmt: skip
_GATE = re.compile(
    r"^\s*(?P<suite>\w+)\.(?P<metric>\w+)(?:\[(?P<group>[^\]]+)\])?\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<threshold>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


@dataclass(frozen=True)
class Gate:
    suite: str
    metric: str
    group: str
    op: str
    threshold: float

    @property
    def text(self) -> str:
        group = "" if self.group == "overall" else f"[{self.group}]"
        return f"{self.suite}.{self.metric}{group} {self.op} {self.threshold:g}"

    @classmethod
    def parse(cls, text: str) -> Gate:
        match = _GATE.match(text)
        if match is None:
            raise ConfigError(
                f"--fail-on {text!r}: expected SUITE.METRIC[GROUP] OP NUMBER, e.g. 'crows_pairs.pct_stereotype > 60'"
            )
        return cls(match["suite"], match["metric"], match["group"] or "overall", match["op"], float(match["threshold"]))

    def check(self, suites: Sequence[Suite]) -> None:
        """Refuse a gate on a suite that will not run or a metric its result does not have."""
        by_name = {suite.name: suite for suite in suites}
        if self.suite not in by_name:
            raise ConfigError(f"--fail-on {self.text!r}: suite {self.suite!r} is not in this run ({sorted(by_name)})")
        known = by_name[self.suite].result_type.metrics
        if self.metric not in known:
            raise ConfigError(
                f"--fail-on {self.text!r}: {self.suite} has no metric {self.metric!r}; it has {list(known)}"
            )


@dataclass(frozen=True)
class GateOutcome:
    gate: Gate
    value: float | None
    failed: bool
    reason: str


def evaluate_gates(gates: Sequence[Gate], frame: pd.DataFrame) -> list[GateOutcome]:
    """Each gate against the run's tidy frame (``Run.frame()``)."""
    outcomes = []
    for gate in gates:
        rows = frame[(frame.suite == gate.suite) & (frame.metric == gate.metric) & (frame.group == gate.group)]
        values = [v for v in rows.value.tolist() if v is not None and v == v]  # NaN != NaN
        if not values:
            groups = sorted(set(frame[(frame.suite == gate.suite) & (frame.metric == gate.metric)].group))
            reason = f"not measured in this run (groups with this metric: {groups or 'none'})"
            outcomes.append(GateOutcome(gate, None, True, reason))
            continue
        value = float(values[0])
        failed = _OPS[gate.op](value, gate.threshold)
        outcomes.append(
            GateOutcome(gate, value, failed, f"{value:.4g} {'crosses' if failed else 'is within'} the gate")
        )
    return outcomes
