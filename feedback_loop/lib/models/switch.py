"""The ML kill switch (the seeds' `enabled` flag), audited like the trading mode.

Every switch is a row of `ml_switch_changes` (who, when, why, old and new state), effective
from its decision date: an emergency stop does not wait for the next day, unlike a promotion.
The switch in force on D is the latest change effective on or before D, enabled before any
change, so a re-run of a past day is served as that day was. Changes are recorded in date
order under a lock; switching to the state already in force changes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

#: Key of the pg_advisory_xact_lock that serializes switches.
SWITCH_LOCK_KEY = 727276


@dataclass(frozen=True)
class MlSwitch:
    """The switch in force on a date and the change that set it (None: never switched)."""

    enabled: bool
    effective_from: dt.date | None = None
    changed_by: str | None = None
    reason: str | None = None
    changed_at: dt.datetime | None = None

    def describe(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        if self.effective_from is None:
            return f"ML {state} (never switched)"
        return f"ML {state} from {self.effective_from} by {self.changed_by}: {self.reason}"


def _latest(conn: sa.Connection, as_of: dt.date | None):
    return conn.execute(sa.text(
        "SELECT new_enabled, effective_from, changed_by, reason, created_at FROM ml_switch_changes"
        " WHERE CAST(:d AS DATE) IS NULL OR effective_from <= CAST(:d AS DATE)"
        " ORDER BY effective_from DESC, change_id DESC LIMIT 1"), {"d": as_of}).first()


def ml_switch_as_of(conn: sa.Connection, as_of) -> MlSwitch:
    """The switch in force on `as_of`."""
    row = _latest(conn, pd.Timestamp(as_of).date())
    return MlSwitch(True) if row is None else MlSwitch(*row)


def switch_ml(conn: sa.Connection, enabled: bool, *, as_of, changed_by: str, reason: str) -> bool:
    """Enable or disable ML serving from `as_of` on and log who/why; False (nothing written) when the
    latest change already left it so. ValueError for an empty reason or a date before the latest change."""
    if not reason or not reason.strip():
        raise ValueError("a reason is required to switch ML serving")
    day = pd.Timestamp(as_of).date()
    with conn.begin_nested() if conn.in_transaction() else conn.begin():
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": SWITCH_LOCK_KEY})
        latest = _latest(conn, None)
        if latest is not None and day < latest.effective_from:
            raise ValueError(f"a switch effective from {day} would precede the latest one, "
                             f"effective from {latest.effective_from}")
        old = True if latest is None else latest.new_enabled
        if old == enabled:
            return False
        conn.execute(sa.text(
            "INSERT INTO ml_switch_changes (effective_from, old_enabled, new_enabled, changed_by, reason)"
            " VALUES (:d, :old, :new, :by, :reason)"),
            {"d": day, "old": old, "new": enabled, "by": changed_by, "reason": reason.strip()})
    return True
