"""The live driver's view of the state the retrain sensors decide on, read from the tables."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib import rules
from feedback_loop.lib.models import registry
from feedback_loop.lib.portfolio.loop_store import read_outcomes


@dataclass(frozen=True)
class SensorInputs:
    """What the retrain sensors decide on after the loop's latest day, read from the tables."""

    day: pd.Timestamp
    champion: rules.ChampionRef | None
    outcomes: pd.DataFrame
    drift: rules.DriftRef | None


def sensor_inputs(conn: sa.Connection) -> SensorInputs | None:
    """The sensors' view: the last day the portfolio stepped, the champion serving the next day,
    the outcomes known then and that day's drift report; None before the loop's first day."""
    day = conn.execute(sa.text("SELECT max(date) FROM portfolio_equity")).scalar()
    if day is None:
        return None
    day = pd.Timestamp(day)
    record = registry.champion_as_of(conn, day + pd.Timedelta(days=1))
    champion = rules.ChampionRef(record.model_id, pd.Timestamp(record.trained_as_of)) if record else None
    report = conn.execute(sa.text("SELECT as_of, model_id, recommendation FROM drift_reports WHERE as_of = :d"),
                          {"d": day.date()}).first()
    drift = rules.DriftRef(pd.Timestamp(report.as_of), report.model_id, report.recommendation) if report else None
    return SensorInputs(day, champion, read_outcomes(conn, day)[["exit_date", "outcome"]], drift)
