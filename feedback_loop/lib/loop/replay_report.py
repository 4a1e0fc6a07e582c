"""The report of a replay: does the closed loop beat the heuristic and the market?

A replay runs several arms of `lib.engine` (heuristic_only, fixed_model, closed_loop) on
the same data; `build_report` turns their final `LoopState`s into one JSON-safe dict and
`write_report` writes it as report.json, report.md and PNG plots.

Conventions:
- Trade and risk metrics are `performance.portfolio_metrics` of each arm's outcomes and
  DAILY equity curve (Sharpe/Sortino annualized by sqrt(252), zero risk-free rate).
- SPY buy-and-hold buys SPY at the adjusted open of the first trading day of the period
  and marks it at each adjusted close. Its total return runs from that open to the last
  close; its Sharpe, Sortino and drawdown come from the daily closes, like the arms'
  curves (whose first mark, at the first close, is still all cash). An arm's
  `spy_return_pct` is that buy-and-hold return and `excess_return_pct` its total return
  minus it, so the table's columns add up.
- Win rate by confidence: `performance.win_rate_by_confidence`; the win rate "rises with
  confidence" when, over buckets with at least MIN_BUCKET_TRADES trades, it never falls
  from one bucket to the next and the top bucket beats the lowest. Fewer than two such
  buckets: None (not enough trades to tell).
- Undefined numbers are None, dates ISO strings (YYYY-MM-DD).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, is_dataclass
from datetime import date
from pathlib import Path, PurePath

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from feedback_loop.lib import policy
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.loop.engine import CLOSED_LOOP_ARM, HEURISTIC_ARM, LoopState
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.portfolio.paper import adjusted_ohlc
from feedback_loop.lib.portfolio.performance import (
    equity_metrics,
    exit_reason_shares,
    portfolio_metrics,
    win_rate_by_confidence,
)
from feedback_loop.lib.training import metrics as metric_fns

#: A confidence bucket takes part in the "rises with confidence" test from this many trades.
MIN_BUCKET_TRADES = 10
SPY_ENTRY = "spy_buy_and_hold"
#: The keys of every arm entry of `report["arms"]`.
ARM_METRIC_KEYS = (
    "trades", "wins", "losses", "breakevens", "win_rate", "win_rate_decided", "breakeven_share",
    "avg_return_pct", "avg_excess_return_pct", "profit_factor", "days", "sharpe", "sortino",
    "max_drawdown_frac", "total_return_pct", "spy_return_pct", "excess_return_pct",
    "final_equity_usd", "open_positions_at_end", "win_rate_rises_with_confidence", "calibration",
    "exit_reason_shares",
)
SPY_METRIC_KEYS = ("days", "total_return_pct", "sharpe", "sortino", "max_drawdown_frac")
#: Holdout metrics of each trained model, over time.
HOLDOUT_METRICS = ("accuracy", "f1_weighted", "roc_auc_ovr", "ece")
#: Their uncertainty (lib/training/metrics.skill_intervals) and the plain verdict.
SKILL_KEYS = ("roc_auc_ovr_ci", "rank_ic", "rank_ic_ci", "top_confidence_excess_pct", "top_confidence_excess_pct_ci",
              "skill_verdict")
_RETRAIN_KEYS = ("as_of", "trigger", "use_outcomes", "rows", "new_model_id", "old_model_id",
                 "deployed", "accuracy_improvement", "f1_improvement", "reason")
_BLEND_KEYS = ("old_weight", "reason", "ml_win_rate", "heuristic_win_rate", "sample_size", "difference_ci",
               "p_value")
EQUITY_PNG, BLEND_WEIGHT_PNG, CALIBRATION_PNG = "equity_curves.png", "blend_weight.png", "calibration.png"


# ---------------------------------------------------------------- JSON
def _json_safe(value):
    """Dicts/lists/dataclasses/paths/numpy/pandas scalars → JSON types; NaN, inf, NaT → None."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if is_dataclass(value):
        return _json_safe(asdict(value))
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if value is pd.NaT:
        return None
    if isinstance(value, date):
        return pd.Timestamp(value).date().isoformat()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def _greater(a, b) -> bool | None:
    return None if a is None or b is None else bool(a > b)


# ---------------------------------------------------------------- SPY
def spy_buy_and_hold_equity(prices: pd.DataFrame, start, end, initial_usd: float = 1.0) -> pd.DataFrame:
    """date, equity_usd: `initial_usd` of SPY bought at the adjusted open of the first SPY
    trading day in [start, end], marked at each adjusted close of the period."""
    spy = adjusted_ohlc(prices[prices["ticker"] == MARKET_TICKER])
    spy = spy[(spy["date"] >= pd.Timestamp(start)) & (spy["date"] <= pd.Timestamp(end))]
    if spy.empty:
        raise ValueError(f"no SPY prices between {start} and {end}")
    shares = initial_usd / spy["adj_open"].iloc[0]
    return pd.DataFrame({"date": spy["date"], "equity_usd": shares * spy["adj_close"]}).reset_index(drop=True)


def spy_buy_and_hold_metrics(prices: pd.DataFrame, start, end) -> dict:
    """SPY_METRIC_KEYS of SPY bought at the first day's adjusted open and held to `end`."""
    equity = spy_buy_and_hold_equity(prices, start, end)
    risk = equity_metrics(equity, prices)
    return {
        "days": risk["days"],
        "total_return_pct": (float(equity["equity_usd"].iloc[-1]) - 1.0) * 100.0,
        "sharpe": risk["sharpe"],
        "sortino": risk["sortino"],
        "max_drawdown_frac": risk["max_drawdown_frac"],
    }


# ---------------------------------------------------------------- arms
def calibration_summary(outcomes: pd.DataFrame, min_trades: int = MIN_BUCKET_TRADES) -> dict:
    """Win rate by confidence bucket and whether it rises with confidence (see module doc)."""
    buckets = win_rate_by_confidence(outcomes)
    rates = buckets.loc[buckets["trades"] >= min_trades, "win_rate"].to_numpy(dtype=float)
    rises = bool((np.diff(rates) >= 0).all() and rates[-1] > rates[0]) if len(rates) >= 2 else None
    return {
        "min_trades_per_bucket": min_trades,
        "buckets_compared": len(rates),
        "win_rate_rises_with_confidence": rises,
        "buckets": buckets.to_dict("records"),
    }


def arm_metrics(state: LoopState, prices: pd.DataFrame, spy_return_pct: float) -> dict:
    """ARM_METRIC_KEYS of one arm; excess returns are over `spy_return_pct` (the period's SPY)."""
    outcomes = state.all_outcomes()
    equity = state.portfolio.equity
    metrics = portfolio_metrics(equity, outcomes, prices)
    total = metrics["total_return_pct"]
    calibration = calibration_summary(outcomes)
    return metrics | {
        "spy_return_pct": spy_return_pct,
        "excess_return_pct": None if total is None else total - spy_return_pct,
        "final_equity_usd": state.portfolio.last_equity_usd(),
        "open_positions_at_end": len(state.portfolio.open_positions()),
        "win_rate_rises_with_confidence": calibration["win_rate_rises_with_confidence"],
        "calibration": calibration,
        "exit_reason_shares": exit_reason_shares(outcomes),
    }


#: The columns of `exit_policy_table`, one row per (exit policy, arm).
EXIT_POLICY_COLUMNS = ("exit_policy", "arm", "trades", "win_rate", "avg_return_pct", "avg_excess_return_pct",
                       "stop_loss", "trailing_stop", "timeout", "sell_signal", "sharpe", "max_drawdown_frac",
                       "total_return_pct", "open_positions_at_end")


def exit_policy_table(results: dict[str, dict[str, LoopState]], prices: pd.DataFrame, start, end) -> pd.DataFrame:
    """EXIT_POLICY_COLUMNS of `replay.compare_exit_policies` results: each arm's `arm_metrics`, with the
    share of its closed trades by exit reason."""
    spy = spy_buy_and_hold_metrics(prices, start, end)["total_return_pct"]
    rows = []
    for name, states in results.items():
        for arm, state in states.items():
            m = arm_metrics(state, prices, spy)
            rows.append({"exit_policy": name, "arm": arm, **m, **m["exit_reason_shares"]})
    return pd.DataFrame(rows, columns=list(EXIT_POLICY_COLUMNS))


# ---------------------------------------------------------------- models
def _retrains_by_trigger(state: LoopState) -> dict:
    """Per trigger: retrains requested, models trained, models deployed, requests skipped."""
    events = pd.DataFrame(state.retrain_events, columns=["trigger", "new_model_id", "deployed"])
    counts = events.assign(trained=events["new_model_id"].notna(),
                           deployed=events["deployed"].astype(bool)).groupby("trigger").agg(
        requested=("trigger", "size"), trained=("trained", "sum"), deployed=("deployed", "sum"))
    skipped = pd.DataFrame(state.skipped_requests, columns=["trigger"])["trigger"].value_counts()
    table = counts.join(skipped.rename("skipped"), how="outer").fillna(0).astype("int64")
    return table.to_dict("index")


def blend_weight_path(state: LoopState, start) -> list[dict]:
    """The weight from `start` (the initial weight), then every change: decided on `as_of`,
    in force from the next trading day."""
    path = state.blend_weight_path
    initial = path[0]["decision"].old_weight if path else state.blend_weight
    first = ({"as_of": pd.Timestamp(start), "weight": initial, "window_days": None}
             | dict.fromkeys(_BLEND_KEYS) | {"reason": "initial weight"})
    changes = [{"as_of": p["as_of"], "weight": p["decision"].new_weight, "window_days": p["window_days"]}
               | {k: getattr(p["decision"], k) for k in _BLEND_KEYS} for p in path]
    return [first, *changes]


def _edge_detected(metrics: dict) -> bool:
    return str(metrics.get("skill_verdict", "")).startswith("edge detected")


def loop_stability(state: LoopState) -> dict:
    """What the loop acted on: challengers compared with a champion (the retrains after the first
    model), how many it promoted, and the share of trading days at the starting blend weight."""
    compared = [c for c in state.comparisons if c["current_model_id"] is not None]
    promoted = sum(bool(c["promoted"]) for c in compared)
    days = pd.to_datetime(state.portfolio.equity["date"]) if len(state.portfolio.equity) else []
    weights = np.array([state.blend_weight_on(day) for day in days])
    at_start = np.isclose(weights, state.starting_blend_weight)
    return {
        "retrains_after_first": len(compared), "promotions_after_first": promoted,
        "promotion_rate": promoted / len(compared) if compared else None,
        "days": len(weights), "days_at_starting_weight_frac": float(at_start.mean()) if len(weights) else None,
        "max_blend_weight": float(weights.max()) if len(weights) else None,
        "first_weight_move": state.blend_weight_path[0]["as_of"] if state.blend_weight_path else None,
    }


def model_section(state: LoopState, start) -> dict:
    """Retrains, skipped requests, promotions, holdout metrics and blend weight of a model arm."""
    trained = [e for e in state.retrain_events if e.get("new_metrics")]
    return {
        "models_trained": len(trained),
        "promotions": sum(bool(c["promoted"]) for c in state.comparisons),
        "retrains_by_trigger": _retrains_by_trigger(state),
        "retrains": [{k: e.get(k) for k in _RETRAIN_KEYS} for e in state.retrain_events],
        "skipped_requests": list(state.skipped_requests),
        "comparisons": list(state.comparisons),
        "holdout_metrics": [
            {"as_of": e["as_of"], "model_id": e["new_model_id"], "trigger": e["trigger"],
             "deployed": e["deployed"], "holdout_rows": e["new_metrics"]["rows"]}
            | {k: e["new_metrics"].get(k) for k in (*HOLDOUT_METRICS, *SKILL_KEYS)}
            for e in trained
        ],
        "models_with_edge": sum(_edge_detected(e["new_metrics"]) for e in trained),
        "stability": loop_stability(state),
        "blend_weight_path": blend_weight_path(state, start),
        "final_blend_weight": state.blend_weight,
    }


# ---------------------------------------------------------------- verdict
def verdict(arms: dict, spy: dict, closed_loop: str = CLOSED_LOOP_ARM.name,
            heuristic: str = HEURISTIC_ARM.name) -> dict:
    """The target questions answered with numbers; None where an arm or a number is missing."""
    closed = arms.get(closed_loop, {})
    baseline = arms.get(heuristic, {})
    sharpe = closed.get("sharpe")
    per_trade = closed.get("avg_excess_return_pct")
    return {
        "closed_loop_arm": closed_loop,
        "heuristic_arm": heuristic,
        "closed_loop_trades": closed.get("trades"),
        "closed_loop_sharpe": sharpe,
        "heuristic_only_sharpe": baseline.get("sharpe"),
        "spy_sharpe": spy["sharpe"],
        "closed_loop_beats_heuristic_sharpe": _greater(sharpe, baseline.get("sharpe")),
        "closed_loop_beats_spy_sharpe": _greater(sharpe, spy["sharpe"]),
        "closed_loop_total_return_pct": closed.get("total_return_pct"),
        "heuristic_only_total_return_pct": baseline.get("total_return_pct"),
        "spy_total_return_pct": spy["total_return_pct"],
        "closed_loop_excess_return_pct": closed.get("excess_return_pct"),
        "closed_loop_mean_excess_return_per_trade_pct": per_trade,
        "closed_loop_mean_excess_return_per_trade_positive": _greater(per_trade, 0.0),
        "closed_loop_win_rate_rises_with_confidence": closed.get("win_rate_rises_with_confidence"),
        "calibration_min_trades_per_bucket": MIN_BUCKET_TRADES,
    }


def build_report(states: dict[str, LoopState], prices: pd.DataFrame, *, start, end,
                 data_description: dict, policy: PortfolioPolicy | None = None) -> dict:
    """The JSON-safe report of a replay whose arms (name → final state) ran over [start, end]
    under the portfolio `policy` (default PortfolioPolicy()).

    Keys: period, data, exit_policy (its name, hold_days and `describe_exits`), arms (name →
    ARM_METRIC_KEYS), spy_buy_and_hold (SPY_METRIC_KEYS), models (name → `model_section`,
    arms with models only), verdict.
    """
    policy = policy or PortfolioPolicy()
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    spy = spy_buy_and_hold_metrics(prices, start, end)
    arms = {name: arm_metrics(state, prices, spy["total_return_pct"]) for name, state in states.items()}
    return _json_safe({
        "period": {"start": start, "end": end, "trading_days": spy["days"]},
        "data": data_description,
        "exit_policy": {"name": policy.exit_policy, "hold_days": policy.hold_days,
                        "rules": policy.describe_exits()},
        "arms": arms,
        SPY_ENTRY: spy,
        "models": {name: model_section(state, start) for name, state in states.items() if state.models},
        "verdict": verdict(arms, spy),
    })


# ---------------------------------------------------------------- plots
def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_figure(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def equity_curves_png(states: dict[str, LoopState], spy_equity: pd.DataFrame) -> bytes:
    """Each arm's equity over its first mark and SPY buy-and-hold (`spy_buy_and_hold_equity`
    with initial_usd=1): growth of 1 invested at the start."""
    figure = Figure(figsize=(9, 4.5))
    axes = figure.add_subplot()
    for name, state in states.items():
        curve = state.portfolio.equity.sort_values("date")
        if len(curve):
            axes.plot(curve["date"], curve["equity_usd"] / curve["equity_usd"].iloc[0], label=name)
    axes.plot(spy_equity["date"], spy_equity["equity_usd"], label="SPY buy-and-hold",
              color="grey", linestyle="--")
    axes.axhline(1.0, color="black", linewidth=0.5)
    axes.set_ylabel("growth of 1")
    axes.set_title("Equity of every arm vs SPY buy-and-hold")
    axes.legend(loc="best")
    figure.autofmt_xdate()
    return _png(figure)


def blend_weight_png(models: dict, end: str) -> bytes:
    """The blend weight over time (a step per change) of every arm with models; arms that
    never changed it are dotted."""
    figure = Figure(figsize=(9, 3.5))
    axes = figure.add_subplot()
    for name, section in models.items():
        path = pd.DataFrame(section["blend_weight_path"])
        dates = pd.to_datetime(pd.concat([path["as_of"], pd.Series([end])], ignore_index=True))
        weights = [*path["weight"], path["weight"].iloc[-1]]
        changes = len(path) - 1
        axes.step(dates, weights, where="post", label=f"{name} ({changes} changes)",
                  linestyle="-" if changes else ":", linewidth=2 if changes else 1)
    axes.set_ylim(0, 1)
    axes.set_ylabel("ML blend weight")
    axes.set_title("Blend weight over time (decided after the close, in force the next day)")
    axes.legend(loc="best")
    figure.autofmt_xdate()
    return _png(figure)


def calibration_png(arms: dict) -> bytes:
    """Win rate per confidence bucket, one bar group per bucket and one bar per arm (n on bars)."""
    figure = Figure(figsize=(9, 4))
    axes = figure.add_subplot()
    names = list(arms)
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        buckets = pd.DataFrame(arms[name]["calibration"]["buckets"])
        x = np.arange(len(buckets)) + (i - (len(names) - 1) / 2) * width
        bars = axes.bar(x, buckets["win_rate"].astype("float64").fillna(0.0), width, label=name)
        axes.bar_label(bars, labels=[f"n={n}" for n in buckets["trades"]], fontsize=7)
        axes.set_xticks(np.arange(len(buckets)), buckets["bucket"])
    axes.set_ylim(0, 1.1)
    axes.set_xlabel("confidence")
    axes.set_ylabel("win rate (breakevens are not wins)")
    axes.set_title("Win rate by confidence bucket")
    axes.legend(loc="best")
    return _png(figure)


# ---------------------------------------------------------------- markdown
def _fmt(value, digits: int = 2, scale: float = 1.0) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value * scale:.{digits}f}"
    return str(value)


def _interval(bounds, digits: int = 2) -> str:
    return "—" if bounds is None else f"[{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"


def _table(headers: list[str], rows: list[list]) -> list[str]:
    """A markdown table (and a blank line); cells go through `_fmt`, pipes are escaped."""
    def line(cells) -> str:
        return "| " + " | ".join(_fmt(c).replace("|", "\\|") for c in cells) + " |"
    return [line(headers), "|" + "---|" * len(headers), *map(line, rows), ""]


def _arm_rows(arms: dict, spy: dict) -> list[list]:
    rows = [[name, m["trades"], _fmt(m["win_rate"], 1, 100), _fmt(m["breakeven_share"], 1, 100),
             _fmt(m["avg_return_pct"]), _fmt(m["avg_excess_return_pct"]), _fmt(m["sharpe"]),
             _fmt(m["sortino"]), _fmt(m["max_drawdown_frac"], 1, 100), _fmt(m["profit_factor"]),
             _fmt(m["total_return_pct"]), _fmt(m["excess_return_pct"])] for name, m in arms.items()]
    rows.append([f"{SPY_ENTRY} (SPY)", "—", "—", "—", "—", "—", _fmt(spy["sharpe"]), _fmt(spy["sortino"]),
                 _fmt(spy["max_drawdown_frac"], 1, 100), "—", _fmt(spy["total_return_pct"]), "0.00"])
    return rows


def _verdict_sentences(v: dict) -> list[str]:
    def compared(beats: bool | None, what: str, a, b) -> str:
        if beats is None:
            return f"- Sharpe vs {what}: cannot be compared ({_fmt(a)} vs {_fmt(b)})."
        word = "beats" if beats else "does not beat"
        return f"- The closed loop **{word}** {what} on Sharpe: {_fmt(a)} vs {_fmt(b)}."

    per_trade = v["closed_loop_mean_excess_return_per_trade_pct"]
    rises = v["closed_loop_win_rate_rises_with_confidence"]
    return [
        compared(v["closed_loop_beats_heuristic_sharpe"], f"the heuristic ({v['heuristic_arm']})",
                 v["closed_loop_sharpe"], v["heuristic_only_sharpe"]),
        compared(v["closed_loop_beats_spy_sharpe"], "SPY buy-and-hold", v["closed_loop_sharpe"],
                 v["spy_sharpe"]),
        (f"- Total return: closed loop {_fmt(v['closed_loop_total_return_pct'])} %, heuristic "
        f"{_fmt(v['heuristic_only_total_return_pct'])} %, SPY {_fmt(v['spy_total_return_pct'])} % "
        f"(closed loop excess over SPY {_fmt(v['closed_loop_excess_return_pct'])} points)."),
        f"- Mean excess return over SPY per closed-loop trade: {_fmt(per_trade)} % over "
        f"{_fmt(v['closed_loop_trades'])} trades — "
        + ("not measurable." if per_trade is None else "positive." if per_trade > 0 else "not positive."),
        "- Win rate rising with confidence (closed loop, buckets with at least "
        f"{v['calibration_min_trades_per_bucket']} trades): "
        + ("not enough trades to tell." if rises is None else "yes." if rises else "no."),
    ]


def _stability_line(s: dict) -> str:
    rate = "—" if s["promotion_rate"] is None else f"{s['promotion_rate']:.0%}"
    at_start = "—" if s["days_at_starting_weight_frac"] is None else f"{s['days_at_starting_weight_frac']:.0%}"
    return (f"Promotions after the first model: {s['promotions_after_first']} of {s['retrains_after_first']} "
            f"challengers ({rate}); blend weight at its starting value on {at_start} of {s['days']} days "
            f"(highest {_fmt(s['max_blend_weight'])}).")


def _model_lines(name: str, section: dict) -> list[str]:
    lines = [f"### {name}", "",
             (f"Models trained: {section['models_trained']}; promoted: {section['promotions']}; "
              f"final blend weight {_fmt(section['final_blend_weight'])}."), "",
             (f"Skill: edge detected in {section['models_with_edge']} of {section['models_trained']} models "
              f"({metric_fns.VERDICT_RULE}); "
              + ("no edge detected in any." if not section["models_with_edge"] else "the others: no edge detected.")),
             "", _stability_line(section["stability"]), ""]
    by_trigger = section["retrains_by_trigger"]
    lines += ["Retrains by trigger:", ""] + _table(
        ["trigger", "requested", "trained", "deployed", "skipped"],
        [[t, c["requested"], c["trained"], c["deployed"], c["skipped"]] for t, c in by_trigger.items()])
    lines += ["Retrains:", ""] + _table(
        ["as of", "trigger", "outcomes", "rows", "model", "deployed", "Δ accuracy", "Δ f1", "reason"],
        [[e["as_of"], e["trigger"], e["use_outcomes"], e["rows"], e["new_model_id"] or "—", e["deployed"],
          _fmt(e["accuracy_improvement"], 4), _fmt(e["f1_improvement"], 4), e["reason"]]
         for e in section["retrains"]])
    if section["skipped_requests"]:
        lines += ["Skipped retrain requests:", ""] + _table(
            ["as of", "trigger", "reason"], [[s["as_of"], s["trigger"], s["reason"]] for s in section["skipped_requests"]])
    lines += ["Promotion comparisons (same holdout):", ""] + _table(
        ["as of", "challenger", "champion", "acc new", "acc champion", "f1 new", "f1 champion", "holdout rows",
         "Δ accuracy 95% interval", "Δ log loss 95% interval", "p", "promoted", "reason"],
        [[c["as_of"], c["new_model_id"], c["current_model_id"] or "—", _fmt(c["new_accuracy"], 4),
          _fmt(c["current_accuracy"], 4), _fmt(c["new_f1"], 4), _fmt(c["current_f1"], 4), c["holdout_rows"],
          _interval(c.get("accuracy_gain_ci"), 4), _interval(c.get("log_loss_gain_ci"), 4),
          _fmt(c.get("p_value"), 3), c["promoted"], c["reason"]] for c in section["comparisons"]])
    lines += ["Holdout metrics of each trained model:", ""] + _table(
        ["as of", "model", "trigger", "deployed", "holdout rows", *HOLDOUT_METRICS, "ROC AUC 95% interval",
         "rank IC", "rank IC 95% interval", "top excess %", "top excess 95% interval", "skill"],
        [[h["as_of"], h["model_id"], h["trigger"], h["deployed"], h["holdout_rows"],
          *(_fmt(h[k], 4) for k in HOLDOUT_METRICS), _interval(h.get("roc_auc_ovr_ci"), 3),
          _fmt(h.get("rank_ic"), 3), _interval(h.get("rank_ic_ci"), 3),
          _fmt(h.get("top_confidence_excess_pct")), _interval(h.get("top_confidence_excess_pct_ci")),
          (h.get("skill_verdict") or "no edge detected: no interval").split(":")[0]]
         for h in section["holdout_metrics"]])
    lines += ["Blend weight path (decided after the close of `as of`, in force the next day):", ""] + _table(
        ["as of", "weight", "ML win rate", "heuristic win rate", "sample",
         f"difference {1 - policy.BLEND_WEIGHT_ALPHA:.2%} interval", "p", "reason"],
        [[p["as_of"], _fmt(p["weight"]), _fmt(p["ml_win_rate"], 3), _fmt(p["heuristic_win_rate"], 3),
          _fmt(p["sample_size"]), _interval(p.get("difference_ci"), 3), _fmt(p.get("p_value"), 4), p["reason"]]
         for p in section["blend_weight_path"]])
    return lines


def report_markdown(report: dict, plots: list[str]) -> str:
    period, arms, spy = report["period"], report["arms"], report[SPY_ENTRY]
    lines = [f"# Replay report {period['start']} – {period['end']}", "",
             f"{period['trading_days']} trading days; arms: {', '.join(arms)}.", ""]
    lines += [f"- {key}: {value}" for key, value in report["data"].items()] + [""]
    lines += [(f"Exit policy: {report['exit_policy']['rules']} (the training label's horizon is the same "
              f"{report['exit_policy']['hold_days']} trading days)."), ""]
    lines += ["## Verdict", "", *_verdict_sentences(report["verdict"]), ""]
    lines += ["## Arms", "",
              ("Win rate and breakeven share in %, returns in percent points, max drawdown in % of the "
              "peak; Sharpe and Sortino annualized from daily equity. SPY is bought at the first "
              "day's adjusted open and held."), ""]
    lines += _table(["arm", "trades", "win rate %", "breakeven %", "avg return/trade %",
                     "avg excess/trade %", "Sharpe", "Sortino", "max DD %", "profit factor",
                     "total return %", "excess vs SPY %"], _arm_rows(arms, spy))
    reasons = list(next(iter(arms.values()))["exit_reason_shares"]) if arms else []
    lines += ["Share of each arm's closed trades by exit reason, in %:", ""]
    lines += _table(["arm", *reasons], [[name, *(_fmt(m["exit_reason_shares"][r], 1, 100) for r in reasons)]
                                        for name, m in arms.items()])
    lines += [f"![equity curves]({EQUITY_PNG})", "", "## Win rate by confidence", ""]
    for name, m in arms.items():
        c = m["calibration"]
        rises = c["win_rate_rises_with_confidence"]
        answer = ("not enough trades to tell" if rises is None else "yes" if rises else "no")
        lines += [(f"**{name}** — win rate rises with confidence: {answer} ({c['buckets_compared']} "
                   f"buckets have at least {c['min_trades_per_bucket']} trades)."), ""]
        lines += _table(["confidence", "trades", "wins", "losses", "breakevens", "win rate %", "avg return %"],
                        [[b["bucket"], b["trades"], b["wins"], b["losses"], b["breakevens"],
                          _fmt(b["win_rate"], 1, 100), _fmt(b["avg_return_pct"])] for b in c["buckets"]])
    lines += [f"![calibration]({CALIBRATION_PNG})", ""]
    if report["models"]:
        lines += ["## Models", ""]
        for name, section in report["models"].items():
            lines += _model_lines(name, section)
        lines += [f"![blend weight]({BLEND_WEIGHT_PNG})", ""]
    lines += ["## Files", "", *(f"- [{p}]({p})" for p in plots), ""]
    return "\n".join(lines)


def write_report(report: dict, states: dict[str, LoopState], prices: pd.DataFrame,
                 directory: Path) -> list[Path]:
    """report.json, report.md and the PNGs (equity curves, calibration, and blend weight when
    some arm has models) in `directory`; returns the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    period = report["period"]
    plots = {
        EQUITY_PNG: equity_curves_png(states, spy_buy_and_hold_equity(prices, period["start"], period["end"])),
        CALIBRATION_PNG: calibration_png(report["arms"]),
    }
    if report["models"]:
        plots[BLEND_WEIGHT_PNG] = blend_weight_png(report["models"], period["end"])
    paths = [directory / "report.json", directory / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2, allow_nan=False))
    paths[1].write_text(report_markdown(report, list(plots)))
    for name, png in plots.items():
        (directory / name).write_bytes(png)
        paths.append(directory / name)
    return paths
