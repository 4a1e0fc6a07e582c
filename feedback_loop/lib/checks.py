"""Quality checks as plain values: what a check is (`Check`) and what one evaluation found (`CheckOutcome`).

Every stage keeps its checks in its own `checks` module as pure functions of frames both
drivers hold; the Dagster side (`defs/checks.py`) turns `Check`s into asset-check specs and
`CheckOutcome`s into check results. ERROR checks gate what follows (blocking), WARN checks alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR, WARN = "ERROR", "WARN"


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    severity: str  # ERROR | WARN
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One named check of an asset: its severity and the description the UI shows."""

    name: str
    severity: str
    description: str

    def outcome(self, passed, **metadata) -> CheckOutcome:
        return CheckOutcome(self.name, bool(passed), self.severity, metadata)

    def not_evaluated(self, reason: str) -> CheckOutcome:
        """Nothing to check (no rows, not a trading day): passes, and says why."""
        return self.outcome(True, evaluated=False, reason=reason)
