"""The loop's numeric requirements (from the reference documents), each defined once.

Values that operators may change at run time (blend weight, trading mode, thresholds,
position limits) are persisted in `reference_portfolio_config`; the defaults here are
the column defaults of that table, and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedback_loop.lib.vocab import ExitPolicy, ExitReason

#: Every comparison of a computed value with a threshold rounds the value to this many decimals
#: first, so float error at the boundary (0.55 - 0.50 = 0.050000000000000044) cannot decide it.
#: One constant, so a rule and the asset check that verifies its decision round alike.
THRESHOLD_DECIMALS = 10

# --- blend weight (ML share of the blended confidence) -------------------------------
BLEND_WEIGHT_DEFAULT = 0.20
BLEND_WEIGHT_MIN = 0.10
BLEND_WEIGHT_MAX = 0.70
BLEND_WEIGHT_STEP = 0.10
#: ML must lead/lag the heuristic by more than this win-rate difference (fraction) to move.
BLEND_WEIGHT_WIN_RATE_MARGIN_FRAC = 0.05
#: Minimum resolved shadow outcomes on each side before the weight may move.
BLEND_WEIGHT_MIN_OUTCOMES_PER_SIDE = 20
BLEND_WEIGHT_WINDOW_DAYS = 30
#: After a move, the weight stays put this many days: evaluated daily over a 30-day window,
#: the same evidence would otherwise step it to a bound in a week.
BLEND_WEIGHT_COOLDOWN_DAYS = 30
#: Significance level of a blend-weight move. Evaluated daily on a sliding 30-day window, the
#: weight is tested on about 365 / 30 = 12 disjoint windows a year, so 1 - EVIDENCE_CONFIDENCE is
#: shared among them (Bonferroni): a weight that stays put on noise for a year, with 95%.
BLEND_WEIGHT_WINDOWS_PER_YEAR = 365 // BLEND_WEIGHT_WINDOW_DAYS

# --- blending ------------------------------------------------------------------------
AGREE_MULTIPLIER = 1.1
AGREE_CAP = 0.98
SAME_DIRECTION_MULTIPLIER = 0.85
OPPOSITE_MULTIPLIER = 0.5

# --- heuristic -----------------------------------------------------------------------
HEURISTIC_BASE_CONFIDENCE = 0.5
HEURISTIC_MIN_TRADES = 2
BUY_SELL_RATIO_CAP = 10.0

# --- promotion gate (absolute improvements) -------------------------------------------
PROMOTION_MIN_ACCURACY_GAIN = 0.02
PROMOTION_MIN_F1_GAIN = 0.03

# --- queue and serving gates (asset checks) -------------------------------------------
#: Nothing is queued under this confidence (seed 001 raised the queue minimum 0.70 -> 0.75); the
#: persisted min_queue_confidence defaults to it and the trading_signals gate holds it as a floor.
QUEUE_CONFIDENCE_FLOOR = 0.75
#: The serving SLA of seed 004 (its health and metrics endpoints): mean scoring latency, and the
#: fallback rate over the window of days the SLA figures are measured over.
SERVING_MAX_MEAN_LATENCY_MS = 75.0
SERVING_MAX_FALLBACK_RATE_FRAC = 0.10
SERVING_FALLBACK_WINDOW_DAYS = 30
#: A challenger's holdout needs at least this many rows (seed 003: min_validation_samples).
MIN_HOLDOUT_ROWS = 20

# --- evidence (skill intervals, the promotion gate's test, the blend weight's test) ------
#: Two-sided confidence of every interval. A gain is supported when the lower bound of its
#: interval is above 0; a blend-weight move needs p < BLEND_WEIGHT_ALPHA.
EVIDENCE_CONFIDENCE = 0.95
BLEND_WEIGHT_ALPHA = (1 - EVIDENCE_CONFIDENCE) / BLEND_WEIGHT_WINDOWS_PER_YEAR
#: Bootstrap resamples of the holdout rows, and their seed (the same rows for every model).
EVIDENCE_BOOTSTRAP_DRAWS = 1000
EVIDENCE_SEED = 15
#: "The rows a model would queue" and its "top-confidence rows": this share of the holdout
#: with the highest buy-side probability (the portfolio is long-only).
TOP_CONFIDENCE_FRAC = 0.20

# --- outcomes ------------------------------------------------------------------------
WIN_THRESHOLD_PCT = 0.5

# --- drift ---------------------------------------------------------------------------
DRIFT_KS_THRESHOLD = 0.15
DRIFT_PSI_THRESHOLD = 0.2
DRIFT_FEATURES_FOR_RETRAIN = 3
DRIFT_ACCURACY_DROP = 0.05
#: Days of live feature rows compared with the champion's training features.
DRIFT_LIVE_WINDOW_DAYS = 30
DRIFT_MIN_LIVE_ROWS = 50
#: Market-wide features are one value per day: a live window of fewer distinct days cannot
#: be compared with a year of training rows, so no drift report is made before this many.
DRIFT_MIN_LIVE_DAYS = 20
DRIFT_MIN_REFERENCE_ROWS = 100
DRIFT_MIN_RESOLVED_OUTCOMES = 30

# --- sensors -------------------------------------------------------------------------
NEW_OUTCOMES_RETRAIN_COUNT = 20
DEGRADATION_WIN_RATE = 0.35
DEGRADATION_WINDOW_DAYS = 30
DEGRADATION_MIN_OUTCOMES = 20
OUTCOME_WINDOW_DAYS = 90

# --- operator retrains (seed 003: retrain_if_needed) -----------------------------------
#: A retrain needs this many labeled rows resolved since the champion's training date (unless forced).
MIN_NEW_SAMPLES_FOR_RETRAIN = 20


# --- exits --------------------------------------------------------------------------
#: Trading days a position is held, counting the entry day: the timeout exits at the close of the
#: HOLD_DAYS-th trading day after the fill at the open. The same value is the training label's
#: horizon (`training.config.training_config_for`) and the shadow outcomes' horizon, so under the
#: `timeout` policy a label is the return of the trade its row would have made.
HOLD_DAYS = 20

#: What each named exit policy checks at the close, in this order (the first that hits is the
#: reason). Under every policy a sell-side signal for a held ticker closes it at the open (reason
#: sell_signal). `none` holds until such a signal: nothing else closes a position.
#: - timeout: the close of the hold_days-th trading day (the label's exit), nothing else;
#: - trailing_stop: the timeout, and a close below the highest close since entry × (1 − trailing_stop_frac);
#: - atr_stop: the timeout, and a close below the stop set at entry (entry − atr_stop_multiple × ATR).
EXIT_RULES: dict[ExitPolicy, tuple[ExitReason, ...]] = {
    ExitPolicy.TIMEOUT: (ExitReason.TIMEOUT,),
    ExitPolicy.TRAILING_STOP: (ExitReason.TIMEOUT, ExitReason.TRAILING_STOP),
    ExitPolicy.ATR_STOP: (ExitReason.TIMEOUT, ExitReason.STOP_LOSS),
    ExitPolicy.NONE: (),
}


@dataclass(frozen=True)
class PortfolioPolicy:
    """Signal thresholds and paper-portfolio rules; persisted in reference_portfolio_config."""

    min_signal_confidence: float = 0.65
    min_queue_confidence: float = QUEUE_CONFIDENCE_FLOOR
    risk_check_confidence: float = 0.70
    risk_check_open_positions: int = 15
    max_open_positions: int = 30
    #: The named exit policy (EXIT_RULES); its timeout is hold_days.
    exit_policy: str = ExitPolicy.TIMEOUT.value
    hold_days: int = HOLD_DAYS
    trailing_stop_frac: float = 0.20
    atr_stop_multiple: float = 1.5
    atr_window_days: int = 20
    fallback_stop_frac: float = 0.10
    initial_capital: float = 100_000.0
    base_position_frac: float = 0.02
    max_position_frac: float = 0.05
    ml_blend_weight: float = BLEND_WEIGHT_DEFAULT
    trading_mode: str = "paper"

    def exit_rules(self) -> tuple[ExitReason, ...]:
        """The exits checked at the close under this policy, in order."""
        return EXIT_RULES[ExitPolicy(self.exit_policy)]

    def describe_exits(self) -> str:
        """One line for metadata and reports: the policy's name and exactly what it checks."""
        parts = {
            ExitReason.TIMEOUT: f"timeout at the close of trading day {self.hold_days}",
            ExitReason.TRAILING_STOP: f"{self.trailing_stop_frac:.0%} trailing stop",
            ExitReason.STOP_LOSS: f"{self.atr_stop_multiple}×ATR({self.atr_window_days}) stop loss",
        }
        checks = ", ".join(parts[rule] for rule in self.exit_rules()) or "no exit at the close"
        return f"{self.exit_policy}: {checks}; a sell signal closes at the open"


# --- bench scale (the smallest and largest synthetic data a bench is meaningful on) --------
BENCH_MIN_DISCLOSURES = 1_000
BENCH_MIN_TICKERS = 10
BENCH_MIN_YEARS = 1.0
BENCH_MAX_YEARS = 30.0

# --- ingest bounds (rows outside them are quarantined, see parsing.py) ------------------
#: Tickers: OCC option symbols (e.g. SPY160219P00180000, up to 21 characters) are the longest real ones.
MAX_TICKER_CHARS = 24
#: Filer names (the longest real one has 30 characters).
MAX_NAME_CHARS = 200
#: Any other cell (descriptions with HTML reach ~450 characters); far below the ~2,700-byte
#: limit of a Postgres btree index row, so no stored value can break an index.
MAX_FIELD_CHARS = 2000
#: Periodic transaction reports exist since the STOCK Act (2012); an earlier filing date is a typo.
MIN_DISCLOSURE_YEAR = 2012
#: Trades are reported within 45 days (late filers: a few years); a trade year before this is a typo (`0009-06-09`).
MIN_TRADE_YEAR = 2000
#: Largest amount band floor or ceiling taken as written (the top real band is "Over $50,000,000").
MAX_AMOUNT_USD = 1e12
