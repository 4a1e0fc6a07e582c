"""Every enumerated value the code writes to the database, in one place.

The SQL CHECK constraints in sql/ list the same values; a test writes each of them.
"""

from __future__ import annotations

from enum import StrEnum


class TransactionType(StrEnum):
    PURCHASE = "purchase"
    SALE_FULL = "sale_full"
    SALE_PARTIAL = "sale_partial"
    EXCHANGE = "exchange"


class AssetType(StrEnum):
    STOCK = "stock"
    ETF = "etf"
    BOND = "bond"
    OPTION = "option"
    FUND = "fund"
    CRYPTO = "crypto"
    OTHER = "other"


#: Asset types that can carry a trading signal.
SIGNAL_ASSET_TYPES = frozenset({AssetType.STOCK, AssetType.ETF})


class Party(StrEnum):
    DEMOCRAT = "D"
    REPUBLICAN = "R"
    INDEPENDENT = "I"


class Chamber(StrEnum):
    HOUSE = "house"
    SENATE = "senate"


class DisclosureSource(StrEnum):
    HOUSE = "house"
    SENATE = "senate"
    SYNTHETIC = "synthetic"


class SignalType(StrEnum):
    STRONG_SELL = "strong_sell"
    SELL = "sell"
    HOLD = "hold"
    BUY = "buy"
    STRONG_BUY = "strong_buy"


#: Direction of each signal type: +1 buy side, -1 sell side, 0 hold.
SIGNAL_DIRECTION = {
    SignalType.STRONG_SELL: -1,
    SignalType.SELL: -1,
    SignalType.HOLD: 0,
    SignalType.BUY: 1,
    SignalType.STRONG_BUY: 1,
}


class BlendCase(StrEnum):
    HEURISTIC_ONLY = "heuristic_only"
    AGREE = "agree"
    SAME_DIRECTION = "same_direction"
    OPPOSITE = "opposite"
    #: The model says hold while the heuristic has a direction.
    ML_NEUTRAL = "ml_neutral"


class ServingPath(StrEnum):
    """Which model (if any) shaped a signal."""

    NO_CHAMPION = "no_champion"
    CHAMPION = "champion"
    PREVIOUS_CHAMPION = "previous_champion"
    HEURISTIC_FALLBACK = "heuristic_fallback"
    #: The arm or configuration disabled the model on purpose.
    HEURISTIC_ARM = "heuristic_arm"
    #: An operator's kill switch (`feedback-loop ml disable`) was in force: heuristic alone.
    ML_DISABLED = "ml_disabled"


class SignalStatus(StrEnum):
    BELOW_QUEUE_THRESHOLD = "below_queue_threshold"
    DIRECTION_DISAGREEMENT = "direction_disagreement"
    QUEUED = "queued"
    FILLED = "filled"
    CLOSED_LONG = "closed_long"
    SKIPPED_RISK = "skipped_risk"
    SKIPPED_MAX_POSITIONS = "skipped_max_positions"
    SKIPPED_NO_PRICE = "skipped_no_price"
    SKIPPED_ALREADY_HELD = "skipped_already_held"
    SKIPPED_NO_POSITION = "skipped_no_position"


class PositionStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ExitReason(StrEnum):
    TIMEOUT = "timeout"
    TRAILING_STOP = "trailing_stop"
    STOP_LOSS = "stop_loss"
    SELL_SIGNAL = "sell_signal"
    MANUAL = "manual"


class ExitPolicy(StrEnum):
    """The named exit policies of the paper portfolio (lib/policy.EXIT_RULES says what each checks)."""

    TIMEOUT = "timeout"
    TRAILING_STOP = "trailing_stop"
    ATR_STOP = "atr_stop"
    NONE = "none"


class Outcome(StrEnum):
    WIN = "win"
    LOSS = "loss"
    BREAKEVEN = "breakeven"
    OPEN = "open"


class ModelStatus(StrEnum):
    TRAINING = "training"
    CANDIDATE = "candidate"
    ACTIVE = "active"
    ARCHIVED = "archived"
    FAILED = "failed"


class RetrainTrigger(StrEnum):
    SCHEDULED = "scheduled"
    MANUAL = "manual"
    NEW_OUTCOMES = "new_outcomes"
    FEATURE_DRIFT = "feature_drift"
    PERFORMANCE_DEGRADATION = "performance_degradation"


class DeploymentAction(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


class DriftRecommendation(StrEnum):
    EMERGENCY_RETRAIN = "emergency_retrain"
    SCHEDULE_RETRAIN = "schedule_retrain"
    NO_ACTION = "no_action"


class TradingMode(StrEnum):
    PAPER = "paper"
    LIVE = "live"


class ModeChangeOutcome(StrEnum):
    """Whether an audited trading-mode switch was applied or refused."""

    APPLIED = "applied"
    REFUSED = "refused"


class OrderSide(StrEnum):
    BUY = "buy"
    SELL = "sell"


class PredictionRole(StrEnum):
    CHAMPION = "champion"
    SHADOW = "shadow"


class LabelSource(StrEnum):
    MARKET = "market"
    OUTCOME = "outcome"


class RejectReason(StrEnum):
    """Why a disclosure or price row was quarantined (the offending value stays in raw_row)."""

    PAPER_FILING = "paper filing without transaction detail"
    TRANSACTION_TYPE = "unknown transaction type"
    TRADE_DATE = "unparseable transaction date"
    TRADE_DATE_RANGE = "implausible transaction date"
    TRADE_AFTER_FILING = "transaction date after the disclosure date"
    FILING_DATE = "unparseable disclosure date"
    FILING_DATE_RANGE = "disclosure date out of range"
    TRUNCATED_AMOUNT = "truncated amount band"
    AMOUNT = "unparseable amount"
    FILER = "missing filer name"
    CONTROL_CHARACTER = "control character in a field"
    INVALID_UNICODE = "invalid unicode in a field"
    FIELD_TOO_LONG = "over-long field"
    # prices
    TICKER = "missing ticker"
    PRICE_DATE = "unparseable or out-of-range price date"
    MISSING_PRICE = "missing close or adj_close"
    NON_POSITIVE_PRICE = "non-positive or non-finite price"
    NEGATIVE_VOLUME = "negative or non-finite volume"


#: Reasons that stop a row of a price file (the CHECK of price_rejects); every other one is a disclosure's.
PRICE_REJECT_REASONS = frozenset({
    RejectReason.TICKER, RejectReason.PRICE_DATE, RejectReason.MISSING_PRICE, RejectReason.NON_POSITIVE_PRICE,
    RejectReason.NEGATIVE_VOLUME, RejectReason.CONTROL_CHARACTER, RejectReason.INVALID_UNICODE,
    RejectReason.FIELD_TOO_LONG,
})
#: Reasons that stop a disclosure row (the CHECK of disclosure_rejects).
DISCLOSURE_REJECT_REASONS = frozenset(RejectReason) - PRICE_REJECT_REASONS | {
    RejectReason.CONTROL_CHARACTER, RejectReason.INVALID_UNICODE, RejectReason.FIELD_TOO_LONG,
}
