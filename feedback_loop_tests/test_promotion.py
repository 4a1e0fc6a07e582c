import numpy as np
import pytest

from feedback_loop.lib import policy
from feedback_loop.lib.models.promotion import GateEvidence, decide_promotion, holdout_evidence
from feedback_loop.lib.training.config import TrainingConfig

CLASSES = TrainingConfig().classes()


def _m(accuracy, f1):
    return {"accuracy": accuracy, "f1_weighted": f1}


def _evidence(low=0.01, new_excess=1.0, current_excess=0.5):
    return GateEvidence("paired bootstrap", 0.03, (low, 0.05), 0.02, (low, 0.04), 0.01, 100,
                        new_excess, current_excess)


def test_accuracy_gain_exactly_at_threshold_promotes_despite_float_error():
    # In floats 0.63 - 0.61 is 0.020000000000000018 and 0.30 - 0.28 is 0.019999999999999962.
    for new, cur in [(0.63, 0.61), (0.62, 0.60), (0.30, 0.28)]:
        decision = decide_promotion(_m(new, 0.50), _m(cur, 0.50), _evidence())
        assert decision.promote, (new, cur)
        assert decision.accuracy_gain == 0.02
        assert "accuracy +0.0200 >= 0.02" in decision.reason


def test_just_below_both_thresholds_stays_candidate():
    decision = decide_promotion(_m(0.6199, 0.5299), _m(0.60, 0.50), _evidence())
    assert not decision.promote
    assert decision.accuracy_gain == 0.0199
    assert decision.f1_gain == 0.0299
    assert "stays candidate" in decision.reason
    assert "+0.0199" in decision.reason and "+0.0299" in decision.reason


def test_f1_gain_alone_promotes():
    decision = decide_promotion(_m(0.60, 0.53), _m(0.60, 0.50), _evidence())
    assert decision.promote
    assert decision.accuracy_gain == 0.0
    assert "f1_weighted +0.0300 >= 0.03" in decision.reason


def test_no_champion_promotes():
    decision = decide_promotion(_m(0.40, 0.30), None)
    assert decision.promote
    assert decision.accuracy_gain is None and decision.f1_gain is None
    assert "no champion" in decision.reason


def test_worse_model_stays_candidate():
    decision = decide_promotion(_m(0.55, 0.45), _m(0.60, 0.50), _evidence())
    assert not decision.promote
    assert decision.accuracy_gain == -0.05
    assert decision.f1_gain == -0.05


def test_a_champion_without_evidence_is_an_error():
    with pytest.raises(ValueError, match="evidence"):
        decide_promotion(_m(0.70, 0.60), _m(0.60, 0.50))


def test_seeds_rule_without_statistical_support_stays_candidate():
    decision = decide_promotion(_m(0.70, 0.60), _m(0.60, 0.50), _evidence(low=-0.001))
    assert not decision.promote
    assert "not supported" in decision.reason and "p=0.010" in decision.reason


def test_supported_gain_with_worse_trading_value_stays_candidate():
    decision = decide_promotion(_m(0.70, 0.60), _m(0.60, 0.50), _evidence(new_excess=0.2, current_excess=0.5))
    assert not decision.promote
    assert "trading value is worse" in decision.reason and "+0.20% vs champion's +0.50%" in decision.reason


def _tickers(rows):
    """Tickers of `rows` holdout rows: five rows each (100 tickers for 500 rows)."""
    return np.arange(rows) // 5


def _noise_proba(rng, rows):
    return rng.dirichlet(np.ones(len(CLASSES)) * 5, rows)


def test_evidence_of_a_noise_challenger_does_not_support_it():
    """Two noise models on 500 rows: whatever their accuracy difference, the intervals reach 0
    in (nearly) every case; the false-support rate stays near the test's level."""
    rng = np.random.default_rng(1)
    supported = 0
    for _ in range(40):
        y = rng.integers(0, len(CLASSES), 500)
        evidence = holdout_evidence(y, _noise_proba(rng, 500), _noise_proba(rng, 500), CLASSES, _tickers(500),
                                    rng.normal(size=500))
        supported += evidence.supported
        assert evidence.accuracy_gain_ci[0] <= evidence.accuracy_gain <= evidence.accuracy_gain_ci[1]
        assert 0 < evidence.p_value <= 1
    assert supported <= 2


def test_evidence_of_a_better_challenger_supports_it_and_measures_its_queue():
    rng = np.random.default_rng(2)
    rows = 500
    y = rng.integers(0, len(CLASSES), rows)
    forward = (y - 2) * 3.0 + rng.normal(size=rows)  # higher class, higher forward excess return
    informed = _noise_proba(rng, rows)
    informed[np.arange(rows), y] += 0.5
    informed /= informed.sum(axis=1, keepdims=True)
    evidence = holdout_evidence(y, informed, _noise_proba(rng, rows), CLASSES, _tickers(rows), forward)
    assert evidence.supported and evidence.p_value < 1 - policy.EVIDENCE_CONFIDENCE
    assert evidence.queue_rows == int(np.ceil(policy.TOP_CONFIDENCE_FRAC * rows))
    assert evidence.new_queue_excess_pct > 2 > evidence.current_queue_excess_pct
    assert evidence.trading_not_worse
    swapped = holdout_evidence(y, _noise_proba(rng, rows), informed, CLASSES, _tickers(rows), forward)
    assert not swapped.supported and not swapped.trading_not_worse


def test_the_same_rows_give_the_same_evidence():
    rng = np.random.default_rng(3)
    y, a, b = rng.integers(0, 5, 300), _noise_proba(rng, 300), _noise_proba(rng, 300)
    assert holdout_evidence(y, a, b, CLASSES, _tickers(300)) == holdout_evidence(y, a, b, CLASSES, _tickers(300))
