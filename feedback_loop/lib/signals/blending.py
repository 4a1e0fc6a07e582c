"""Blend heuristic and champion-model confidence, apply the signal and queue thresholds.

With blend weight w (the ML share) and confidences as fractions:

    blended = heuristic_confidence * (1 - w) + ml_confidence * w

| blend_case       | when                                             | confidence                                  |
|------------------|--------------------------------------------------|---------------------------------------------|
| heuristic_only   | no model, or no model row for the signal         | heuristic_confidence                        |
| agree            | same signal type                                 | min(blended * AGREE_MULTIPLIER, AGREE_CAP)  |
| ml_neutral       | model says hold, heuristic has a direction       | blended * SAME_DIRECTION_MULTIPLIER         |
| same_direction   | same direction, different strength               | blended * SAME_DIRECTION_MULTIPLIER         |
| opposite         | buy side vs sell side                            | min(heuristic, ml) * OPPOSITE_MULTIPLIER    |

ml_neutral is treated like a same-direction disagreement in strength: the model does
not contradict the direction, it only withholds support, so the heuristic's direction
stands at a reduced confidence. The signal type is always the heuristic's.

Rows below `policy.min_signal_confidence` are not generated. Status: opposite rows are
`direction_disagreement` (never queued), rows below `policy.min_queue_confidence` are
`below_queue_threshold`, the rest `queued`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feedback_loop.lib.policy import (
    AGREE_CAP,
    AGREE_MULTIPLIER,
    OPPOSITE_MULTIPLIER,
    SAME_DIRECTION_MULTIPLIER,
    PortfolioPolicy,
)
from feedback_loop.lib.vocab import SIGNAL_DIRECTION, BlendCase, SignalStatus

_DIRECTION = {signal_type.value: direction for signal_type, direction in SIGNAL_DIRECTION.items()}


def blend_signals(
    heuristic: pd.DataFrame, ml: pd.DataFrame | None, blend_weight: float, policy: PortfolioPolicy
) -> pd.DataFrame:
    """Trading signals from heuristic scores and (optionally) champion-model predictions.

    `heuristic` is the output of `heuristic.score_heuristic`. `ml` is None (no champion)
    or a frame keyed by (ticker, as_of), one row per key, with `ml_signal_type`
    (vocab.SignalType value) and `ml_confidence` (probability of the predicted class,
    fraction); heuristic rows without a model row are blended as heuristic_only.
    `blend_weight` is the ML share, fraction in [0, 1].

    Returns the generated rows (confidence >= policy.min_signal_confidence): the
    heuristic columns plus ml_signal_type, ml_confidence, blend_weight, blend_case,
    ml_enhanced (True when the model shaped the confidence), signal_type, confidence,
    status (vocab.SignalStatus value) and signal_id ('YYYY-MM-DD:TICKER').
    """
    if not 0.0 <= blend_weight <= 1.0:
        raise ValueError(f"blend_weight {blend_weight} is not a fraction in [0, 1]")
    heuristic_direction = heuristic["heuristic_signal_type"].map(_DIRECTION)
    if heuristic_direction.isna().any() or (heuristic_direction == 0).any():
        raise ValueError("heuristic rows must carry a buy- or sell-side heuristic_signal_type")
    if ml is None:
        out = heuristic.assign(ml_signal_type=None, ml_confidence=np.nan)
    else:
        model = ml[["ticker", "as_of", "ml_signal_type", "ml_confidence"]]
        out = heuristic.merge(model, on=["ticker", "as_of"], how="left", validate="many_to_one")

    h_conf = out["heuristic_confidence"].to_numpy(dtype=float)
    m_conf = out["ml_confidence"].to_numpy(dtype=float)
    h_type = out["heuristic_signal_type"].to_numpy(dtype=object)
    m_type = out["ml_signal_type"].to_numpy(dtype=object)
    h_direction = heuristic_direction.to_numpy(dtype=float)
    m_direction = out["ml_signal_type"].map(_DIRECTION).to_numpy(dtype=float)
    blended = h_conf * (1.0 - blend_weight) + m_conf * blend_weight

    cases = [
        np.isnan(m_conf) | np.isnan(m_direction),
        h_type == m_type,
        m_direction == 0,
        h_direction == m_direction,
    ]
    case = np.select(
        cases,
        [
            BlendCase.HEURISTIC_ONLY.value,
            BlendCase.AGREE.value,
            BlendCase.ML_NEUTRAL.value,
            BlendCase.SAME_DIRECTION.value,
        ],
        BlendCase.OPPOSITE.value,
    )
    confidence = np.select(
        cases,
        [
            h_conf,
            np.minimum(blended * AGREE_MULTIPLIER, AGREE_CAP),
            blended * SAME_DIRECTION_MULTIPLIER,
            blended * SAME_DIRECTION_MULTIPLIER,
        ],
        np.minimum(h_conf, m_conf) * OPPOSITE_MULTIPLIER,
    )
    status = np.select(
        [case == BlendCase.OPPOSITE.value, confidence < policy.min_queue_confidence],
        [SignalStatus.DIRECTION_DISAGREEMENT.value, SignalStatus.BELOW_QUEUE_THRESHOLD.value],
        SignalStatus.QUEUED.value,
    )

    out["blend_weight"] = float(blend_weight)
    out["blend_case"] = case
    out["ml_enhanced"] = case != BlendCase.HEURISTIC_ONLY.value
    out["signal_type"] = h_type
    out["confidence"] = confidence
    out["status"] = status
    out = out.loc[confidence >= policy.min_signal_confidence].reset_index(drop=True)
    day = np.datetime_as_string(pd.to_datetime(out["as_of"]).to_numpy("datetime64[D]"), unit="D")
    out["signal_id"] = pd.Series(day, dtype=object) + ":" + out["ticker"].astype(str)
    return out
