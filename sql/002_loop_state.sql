-- Per-day state the Dagster assets persist between steps (the engine keeps the same in memory).

CREATE TABLE ticker_features (
    as_of           DATE NOT NULL,
    ticker          TEXT NOT NULL,
    trade_count     INTEGER NOT NULL,
    buy_count       INTEGER NOT NULL,
    sell_count      INTEGER NOT NULL,
    features        JSONB NOT NULL,            -- FEATURE_NAMES -> value (null when unknown)
    PRIMARY KEY (as_of, ticker)
);

CREATE TABLE heuristic_signals (
    as_of                   DATE NOT NULL,
    ticker                  TEXT NOT NULL,
    heuristic_signal_type   TEXT NOT NULL CHECK (heuristic_signal_type IN ('strong_sell', 'sell', 'hold', 'buy', 'strong_buy')),
    heuristic_confidence    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (as_of, ticker)
);

CREATE TABLE portfolio_equity (
    date            DATE PRIMARY KEY,
    equity_usd      DOUBLE PRECISION NOT NULL,
    cash_usd        DOUBLE PRECISION NOT NULL,
    invested_usd    DOUBLE PRECISION NOT NULL,
    open_positions  INTEGER NOT NULL
);
