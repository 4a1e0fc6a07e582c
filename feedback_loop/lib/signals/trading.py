"""One day's trading signals: heuristic scores, the serving model's view, the blend, the queue.

The engine and the `trading_signals` asset both build signals here, so a replayed day and a
materialized day produce the same rows.
"""

from __future__ import annotations

import pandas as pd

from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.signals.blending import blend_signals
from feedback_loop.lib.signals.features import feature_vectors
from feedback_loop.lib.vocab import ServingPath


def build_signals(
    heuristic: pd.DataFrame,
    ml: pd.DataFrame | None,
    *,
    blend_weight: float,
    policy: PortfolioPolicy,
    serving_path: ServingPath,
    model_id: str | None = None,
    model_version: str | None = None,
    challenger: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Signals with the exact feature vector, model identity, blend weight and both confidences.

    `heuristic`: `score_heuristic` output (features included). `ml`: the serving model's
    predictions keyed by (ticker, as_of) or None. `challenger`: a candidate's predictions on
    the same rows (shadow scoring; stored, never traded).
    """
    signals = blend_signals(heuristic, ml, blend_weight, policy)
    if not len(signals):
        return signals
    signals = signals.assign(
        model_id=model_id if ml is not None else None,
        model_version=model_version if ml is not None else None,
        serving_path=serving_path.value,
    )
    signals["features"] = feature_vectors(signals)
    if challenger is not None:
        shadow = challenger[["ticker", "as_of", "ml_signal_type"]].rename(
            columns={"ml_signal_type": "challenger_signal_type"})
        signals = signals.merge(shadow, on=["ticker", "as_of"], how="left", validate="one_to_one")
    return signals.reset_index(drop=True)
