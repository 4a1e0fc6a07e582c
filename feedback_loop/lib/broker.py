"""Live mode: the Alpaca REST client, the guarded trading-mode switch, and the persisted policy.

Live trading is off unless an operator both confirms the switch and sets
FEEDBACK_LOOP_ALLOW_LIVE_TRADING=1 in the environment of the process that switches.
Every switch is written to reference_portfolio_config and trading_mode_changes together;
a refused switch to live is recorded in trading_mode_changes as refused.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import pandas as pd
import requests
import sqlalchemy as sa

from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.vocab import ModeChangeOutcome, TradingMode

BASE_URLS = {
    TradingMode.PAPER: "https://paper-api.alpaca.markets",
    TradingMode.LIVE: "https://api.alpaca.markets",
}
KEY_ID_ENV = "APCA_API_KEY_ID"
SECRET_KEY_ENV = "APCA_API_SECRET_KEY"
ALLOW_LIVE_ENV = "FEEDBACK_LOOP_ALLOW_LIVE_TRADING"
ORDER_SIDES = ("buy", "sell")
REQUEST_TIMEOUT_S = 10.0
BROKER_POSITION_COLUMNS = ["ticker", "quantity", "avg_entry_price_usd", "market_value_usd"]


class LiveTradingNotAllowed(PermissionError):
    """Switching to live mode without confirmation or without the environment flag."""


class AlpacaBroker:
    """Minimal Alpaca trading REST client (market orders and positions).

    `session` is any object with requests.Session's `request(method, url, **kwargs)`;
    tests pass a fake one so nothing reaches the network.
    """

    def __init__(self, trading_mode: str, key_id: str, secret_key: str, session=None):
        self.trading_mode = TradingMode(trading_mode)
        self.base_url = BASE_URLS[self.trading_mode]
        self.session = session if session is not None else requests.Session()
        self._headers = {"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret_key}

    @classmethod
    def from_env(cls, trading_mode: str, env: Mapping[str, str] = os.environ, session=None) -> AlpacaBroker:
        missing = [name for name in (KEY_ID_ENV, SECRET_KEY_ENV) if not env.get(name)]
        if missing:
            raise RuntimeError(
                f"Alpaca credentials missing: set {' and '.join(missing)} for {trading_mode} trading")
        return cls(trading_mode, env[KEY_ID_ENV], env[SECRET_KEY_ENV], session=session)

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


def send_day_orders(broker: AlpacaBroker, positions: pd.DataFrame, day, env: Mapping[str, str] = os.environ) -> pd.DataFrame:
    """Send the day's paper-executor decisions to the broker: a buy per position opened on `day`,
    a sell per position closed on `day`. Returns positions with broker_order_id set for the buys.

    Refuses unless FEEDBACK_LOOP_ALLOW_LIVE_TRADING=1 is set for this process too: the recorded
    mode alone never moves money. The signal id is the client order id, so a re-run cannot
    double-order.
    """
    if broker.trading_mode == "live" and env.get(ALLOW_LIVE_ENV) != "1":
        raise LiveTradingNotAllowed(f"trading_mode is live but {ALLOW_LIVE_ENV}=1 is not set for this run")
    day = pd.Timestamp(day)
    out = positions.copy()
    opened = out["entry_date"] == day
    for index in out.index[opened]:
        row = out.loc[index]
        out.loc[index, "broker_order_id"] = broker.submit_market_order(
            row["ticker"], float(row["quantity"]), "buy", client_order_id=row["signal_id"])
    for _, row in out[out["exit_date"] == day].iterrows():
        broker.submit_market_order(row["ticker"], float(row["quantity"]), "sell",
                                   client_order_id=f"{row['signal_id']}:exit")
    return out
