-- Every order sent to a broker, keyed by its client order id: the audit of money moved, the
-- reason a repeated order is a no-op, and the record of which positions the broker holds
-- (an exit is sent only for a position whose buy is here).
CREATE TABLE broker_orders (
    client_order_id TEXT PRIMARY KEY,
    position_id     TEXT NOT NULL,
    trade_date      DATE NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    ticker          TEXT NOT NULL,
    quantity        DOUBLE PRECISION NOT NULL CHECK (quantity > 0),
    trading_mode    TEXT NOT NULL CHECK (trading_mode IN ('paper', 'live')),
    broker_order_id TEXT NOT NULL,
    sent_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (position_id, side)
);
