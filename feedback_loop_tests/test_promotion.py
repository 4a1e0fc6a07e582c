from feedback_loop.lib.models.promotion import decide_promotion


def _m(accuracy, f1):
    return {"accuracy": accuracy, "f1_weighted": f1}


def test_accuracy_gain_exactly_at_threshold_promotes_despite_float_error():
    # In floats 0.63 - 0.61 is 0.020000000000000018 and 0.30 - 0.28 is 0.019999999999999962.
    for new, cur in [(0.63, 0.61), (0.62, 0.60), (0.30, 0.28)]:
        decision = decide_promotion(_m(new, 0.50), _m(cur, 0.50))
        assert decision.promote, (new, cur)
        assert decision.accuracy_gain == 0.02
        assert "accuracy +0.0200 >= 0.02" in decision.reason


def test_just_below_both_thresholds_stays_candidate():
    decision = decide_promotion(_m(0.6199, 0.5299), _m(0.60, 0.50))
    assert not decision.promote
    assert decision.accuracy_gain == 0.0199
    assert decision.f1_gain == 0.0299
    assert "stays candidate" in decision.reason
    assert "+0.0199" in decision.reason and "+0.0299" in decision.reason


def test_f1_gain_alone_promotes():
    decision = decide_promotion(_m(0.60, 0.53), _m(0.60, 0.50))
    assert decision.promote
    assert decision.accuracy_gain == 0.0
    assert "f1_weighted +0.0300 >= 0.03" in decision.reason


def test_no_champion_promotes():
    decision = decide_promotion(_m(0.40, 0.30), None)
    assert decision.promote
    assert decision.accuracy_gain is None and decision.f1_gain is None
    assert "no champion" in decision.reason


def test_worse_model_stays_candidate():
    decision = decide_promotion(_m(0.55, 0.45), _m(0.60, 0.50))
    assert not decision.promote
    assert decision.accuracy_gain == -0.05
    assert decision.f1_gain == -0.05
