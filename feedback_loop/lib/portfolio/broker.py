"""Live mode: the Alpaca REST client, the guarded trading-mode switch, and the persisted policy.

Live trading is off unless an operator both confirms the switch and sets
FEEDBACK_LOOP_ALLOW_LIVE_TRADING=1 in the environment of the process that switches.
Every switch is written to reference_portfolio_config and trading_mode_changes together;
a refused switch to live is recorded in trading_mode_changes as refused.

Money moves only through `send_live_orders`, which follows `plan_live_orders`: orders only for
the current trading day (a re-run of a past day sends nothing), only in live mode with the
environment flag set, exits only for positions whose buy went to the broker, and every order
recorded in broker_orders under its client order id (a repeated order is a no-op).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo

import pandas as pd
import requests
import sqlalchemy as sa

from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.vocab import ModeChangeOutcome, OrderSide, TradingMode

BASE_URLS = {
    TradingMode.PAPER: "https://paper-api.alpaca.markets",
    TradingMode.LIVE: "https://api.alpaca.markets",
}
BASE_URL_ENV = "APCA_API_BASE_URL"
KEY_ID_ENV = "APCA_API_KEY_ID"
SECRET_KEY_ENV = "APCA_API_SECRET_KEY"
ALLOW_LIVE_ENV = "FEEDBACK_LOOP_ALLOW_LIVE_TRADING"
ORDER_SIDES = tuple(side.value for side in OrderSide)
#: The exchange whose calendar day is "today" for live orders.
EXCHANGE_TZ = ZoneInfo("America/New_York")
ORDER_COLUMNS = ["client_order_id", "position_id", "trade_date", "side", "ticker", "quantity"]
#: HTTP status Alpaca answers a client_order_id it has already accepted with.
DUPLICATE_ORDER_STATUS = 422
REQUEST_TIMEOUT_S = 10.0
BROKER_POSITION_COLUMNS = ["ticker", "quantity", "avg_entry_price_usd", "market_value_usd"]


class LiveTradingNotAllowed(PermissionError):
    """Switching to live mode without confirmation or without the environment flag."""


class AlpacaBroker:
    """Minimal Alpaca trading REST client (market orders and positions).

    `session` is any object with requests.Session's `request(method, url, **kwargs)`;
    tests pass a fake one so nothing reaches the network.
    """

    def __init__(self, trading_mode: str, key_id: str, secret_key: str, session=None,
                 base_url: str | None = None):
        self.trading_mode = TradingMode(trading_mode)
        self.base_url = (base_url or BASE_URLS[self.trading_mode]).rstrip("/")
        self.session = session if session is not None else requests.Session()
        self._headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key}

    @classmethod
    def from_env(cls, trading_mode: str, env: Mapping[str, str] = os.environ, session=None) -> AlpacaBroker:
        missing = [name for name in (KEY_ID_ENV, SECRET_KEY_ENV) if not env.get(name)]
        if missing:
            raise RuntimeError(
                f"Alpaca credentials missing: set {' and '.join(missing)} for {trading_mode} trading")
        return cls(trading_mode, env[KEY_ID_ENV], env[SECRET_KEY_ENV], session=session,
                   base_url=env.get(BASE_URL_ENV))

    def _call(self, method: str, path: str, **kwargs):
        response = self.session.request(method, self.base_url + path, headers=self._headers,
                                        timeout=REQUEST_TIMEOUT_S, **kwargs)
        response.raise_for_status()
        return response.json()

    def submit_market_order(self, ticker: str, qty: float, side: str,
                            client_order_id: str | None = None) -> str:
        """Submit a day market order (fractional qty allowed); return the broker's order id.

        `client_order_id` (e.g. the signal id) lets the broker reject a duplicate submission.
        """
        if side not in ORDER_SIDES:
            raise ValueError(f"side must be one of {ORDER_SIDES}, got {side!r}")
        if not qty > 0:
            raise ValueError(f"qty must be positive, got {qty}")
        order = {"symbol": ticker, "qty": str(qty), "side": side, "type": "market", "time_in_force": "day"}
        if client_order_id is not None:
            order["client_order_id"] = client_order_id
        return self._call("POST", "/v2/orders", json=order)["id"]

    def order_id_of(self, client_order_id: str) -> str:
        """The broker's id of the order submitted under `client_order_id`."""
        return self._call("GET", "/v2/orders:by_client_order_id",
                          params={"client_order_id": client_order_id})["id"]

    def get_positions(self) -> pd.DataFrame:
        """Open positions at the broker as BROKER_POSITION_COLUMNS (Alpaca sends numbers as strings)."""
        rows = self._call("GET", "/v2/positions")
        return pd.DataFrame({
            "ticker": [row["symbol"] for row in rows],
            "quantity": [float(row["qty"]) for row in rows],
            "avg_entry_price_usd": [float(row["avg_entry_price"]) for row in rows],
            "market_value_usd": [float(row["market_value"]) for row in rows],
        }, columns=BROKER_POSITION_COLUMNS)


def read_policy(conn: sa.Connection) -> PortfolioPolicy:
    """The persisted PortfolioPolicy (reference_portfolio_config)."""
    fields = [f.name for f in dataclasses.fields(PortfolioPolicy)]
    row = conn.execute(sa.text(f"SELECT {', '.join(fields)} FROM reference_portfolio_config")).mappings().one()
    return PortfolioPolicy(**row)


def write_policy(conn: sa.Connection, policy: PortfolioPolicy) -> None:
    """Persist every field of `policy` but the trading mode, which only `switch_trading_mode` changes."""
    fields = [f.name for f in dataclasses.fields(PortfolioPolicy) if f.name != "trading_mode"]
    conn.execute(sa.text(f"UPDATE reference_portfolio_config SET {', '.join(f'{n} = :{n}' for n in fields)}, "
                         "updated_at = now()"), {n: getattr(policy, n) for n in fields})


def switch_trading_mode(
    conn: sa.Connection,
    new_mode: str,
    *,
    confirm: bool,
    changed_by: str,
    reason: str | None,
    env: Mapping[str, str] = os.environ,
) -> bool:
    """Set the trading mode and log the change, atomically; False (nothing written) when the
    mode already is `new_mode`.

    Switching to live requires confirm=True and FEEDBACK_LOOP_ALLOW_LIVE_TRADING=1 in `env`;
    otherwise the attempt is logged as refused, in its own transaction (it stays recorded when
    the caller's transaction rolls back), and LiveTradingNotAllowed is raised. Switching to
    paper is always allowed. Runs in a savepoint when `conn` is already in a transaction.
    """
    new_mode = TradingMode(new_mode)
    env_flag_set = env.get(ALLOW_LIVE_ENV) == "1"
    change = {"new": new_mode.value, "by": changed_by, "reason": reason, "confirmed": confirm,
              "flag": env_flag_set}
    if new_mode == TradingMode.LIVE and not (confirm and env_flag_set):
        missing = [what for what, ok in (("confirm=True", confirm), (f"{ALLOW_LIVE_ENV}=1", env_flag_set))
                   if not ok]
        with conn.engine.begin() as audit:
            old_mode = audit.execute(sa.text("SELECT trading_mode FROM reference_portfolio_config")).scalar_one()
            _log_mode_change(audit, dict(change, old=old_mode, outcome=ModeChangeOutcome.REFUSED.value))
        raise LiveTradingNotAllowed(f"switching to live trading requires {' and '.join(missing)}")
    with conn.begin_nested() if conn.in_transaction() else conn.begin():
        old_mode = conn.execute(
            sa.text("SELECT trading_mode FROM reference_portfolio_config FOR UPDATE")).scalar_one()
        if old_mode == new_mode:
            return False
        conn.execute(sa.text(
            "UPDATE reference_portfolio_config SET trading_mode = :mode, updated_at = now()"),
            {"mode": new_mode.value})
        _log_mode_change(conn, dict(change, old=old_mode, outcome=ModeChangeOutcome.APPLIED.value))
    return True


def _log_mode_change(conn: sa.Connection, change: dict) -> None:
    conn.execute(sa.text(
        "INSERT INTO trading_mode_changes"
        " (old_mode, new_mode, changed_by, reason, confirmed, env_flag_set, outcome)"
        " VALUES (:old, :new, :by, :reason, :confirmed, :flag, :outcome)"), change)


def last_mode_change(conn: sa.Connection) -> dict | None:
    """The newest trading_mode_changes row (applied or refused), or None."""
    row = conn.execute(sa.text(
        "SELECT old_mode, new_mode, changed_by, reason, confirmed, env_flag_set, outcome, created_at"
        " FROM trading_mode_changes ORDER BY change_id DESC LIMIT 1")).first()
    return dict(row._mapping) if row is not None else None


def exchange_today(now: dt.datetime) -> dt.date:
    """The exchange's calendar date at the instant `now` (timezone-aware)."""
    return now.astimezone(EXCHANGE_TZ).date()


@dataclasses.dataclass(frozen=True)
class LiveOrderPlan:
    """The orders that may go to the broker for one day (ORDER_COLUMNS) and why."""

    orders: pd.DataFrame
    note: str


def _no_orders(note: str) -> LiveOrderPlan:
    return LiveOrderPlan(pd.DataFrame(columns=ORDER_COLUMNS), note)


def plan_live_orders(positions: pd.DataFrame, day, *, today: dt.date, trading_mode: str, switch_confirmed: bool,
                     env: Mapping[str, str], sent_orders: pd.DataFrame) -> LiveOrderPlan:
    """Which of `day`'s paper-executor decisions may be sent to the live broker: the one rule.

    Nothing unless the mode is live and `day` is `today` (the injected clock's trading day):
    a re-run of a past day never moves money. Live mode on today needs both keys: the last
    mode switch confirmed with the flag (`switch_confirmed`) and FEEDBACK_LOOP_ALLOW_LIVE_TRADING=1
    in this process's `env`; without either LiveTradingNotAllowed is raised. A buy per position opened on `day` (client id = signal id), a
    sell per position closed on `day` whose buy is in `sent_orders` (broker_orders rows);
    orders whose client id is already in `sent_orders` are left out.
    """
    day = pd.Timestamp(day)
    if TradingMode(trading_mode) != TradingMode.LIVE:
        return _no_orders(f"{trading_mode} mode: no orders go to the broker")
    if day.date() != today:
        return _no_orders(f"{day.date()} is not the current trading day {today}: re-runs of past days send no orders")
    if env.get(ALLOW_LIVE_ENV) != "1":
        raise LiveTradingNotAllowed(f"trading_mode is live but {ALLOW_LIVE_ENV}=1 is not set for this run")
    if not switch_confirmed:
        raise LiveTradingNotAllowed("trading_mode is live but no confirmed switch to live is recorded")
    held = set(sent_orders.loc[sent_orders["side"] == OrderSide.BUY.value, "position_id"])
    buys = positions[positions["entry_date"] == day].assign(
        side=OrderSide.BUY.value, client_order_id=lambda f: f["signal_id"])
    exits = positions[positions["exit_date"] == day]
    sells = exits[exits["position_id"].isin(held)].assign(
        side=OrderSide.SELL.value, client_order_id=lambda f: f["signal_id"] + ":exit")
    wanted = pd.concat([buys, sells], ignore_index=True).assign(trade_date=day.date())
    orders = wanted[~wanted["client_order_id"].isin(set(sent_orders["client_order_id"]))][ORDER_COLUMNS]
    note = (f"{len(orders)} order(s) to send; {len(wanted) - len(orders)} already sent; "
            f"{len(exits) - len(sells)} exit(s) of positions the broker never held not sent")
    return LiveOrderPlan(orders.reset_index(drop=True), note)


def live_switch_confirmed(conn: sa.Connection) -> bool:
    """Whether the latest applied mode switch went to live with confirmation and the env flag
    (a refused switch changed nothing and does not count)."""
    return bool(conn.execute(sa.text(
        "SELECT new_mode = :live AND confirmed AND env_flag_set FROM trading_mode_changes"
        " WHERE outcome = :applied ORDER BY change_id DESC LIMIT 1"),
        {"live": TradingMode.LIVE.value, "applied": ModeChangeOutcome.APPLIED.value}).scalar())


def read_broker_orders(conn: sa.Connection) -> pd.DataFrame:
    """Every order recorded as sent to the broker."""
    return pd.read_sql(sa.text("SELECT * FROM broker_orders ORDER BY sent_at, client_order_id"), conn)


def _submit_once(broker: AlpacaBroker, order) -> str:
    """Submit an order; if the broker already holds its client id (a send whose record was lost), its id."""
    try:
        return broker.submit_market_order(order.ticker, float(order.quantity), order.side,
                                          client_order_id=order.client_order_id)
    except requests.HTTPError as error:
        if error.response is None or error.response.status_code != DUPLICATE_ORDER_STATUS:
            raise
        return broker.order_id_of(order.client_order_id)


def send_live_orders(engine: sa.Engine, connect: Callable[[], AlpacaBroker], positions: pd.DataFrame, day, *,
                     today: dt.date, trading_mode: str,
                     env: Mapping[str, str] = os.environ) -> tuple[pd.DataFrame, dict]:
    """Send what `plan_live_orders` allows, recording each order in broker_orders as soon as the
    broker accepts it. `connect` builds the broker client, only when there is an order to send.
    Returns positions with broker_order_id set from the recorded buys, and metadata (orders
    sent, the plan's note)."""
    with engine.connect() as conn:
        sent = read_broker_orders(conn)
        confirmed = live_switch_confirmed(conn)
    plan = plan_live_orders(positions, day, today=today, trading_mode=trading_mode, switch_confirmed=confirmed,
                            env=env, sent_orders=sent)
    broker = connect() if len(plan.orders) else None
    for order in plan.orders.itertuples(index=False):
        broker_order_id = _submit_once(broker, order)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO broker_orders (client_order_id, position_id, trade_date, side, ticker, quantity,"
                " trading_mode, broker_order_id) VALUES (:client_order_id, :position_id, :trade_date, :side,"
                " :ticker, :quantity, :mode, :broker_order_id)"),
                {**order._asdict(), "quantity": float(order.quantity), "mode": broker.trading_mode.value,
                 "broker_order_id": broker_order_id})
    out = positions.copy()
    if len(plan.orders):
        with engine.connect() as conn:
            sent = read_broker_orders(conn)
    buy_ids = sent[sent["side"] == OrderSide.BUY.value].set_index("position_id")["broker_order_id"]
    recorded = out["position_id"].map(buy_ids)
    out.loc[recorded.notna(), "broker_order_id"] = recorded[recorded.notna()]
    return out, {"live_orders_sent": len(plan.orders), "live_orders_note": plan.note}
