import dataclasses

import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from feedback_loop.lib.broker import (
    ALLOW_LIVE_ENV,
    AlpacaBroker,
    LiveTradingNotAllowed,
    read_policy,
    send_day_orders,
    switch_trading_mode,
)
from feedback_loop.lib.policy import PortfolioPolicy


class FakeResponse:
    def __init__(self, payload, status=200):
        self.payload, self.status_code = payload, status

    def json(self):
        return self.payload

    def raise_for_status(self):
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code}", response=self)


class FakeSession:
    """Records every request; answers from a queue of FakeResponses."""

    def __init__(self, *responses):
        self.responses, self.calls = list(responses), []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        return self.responses.pop(0)


def test_base_url_follows_trading_mode():
    assert AlpacaBroker("paper", "k", "s", FakeSession()).base_url == "https://paper-api.alpaca.markets"
    assert AlpacaBroker("live", "k", "s", FakeSession()).base_url == "https://api.alpaca.markets"
    with pytest.raises(ValueError):
        AlpacaBroker("sandbox", "k", "s", FakeSession())


def test_submit_market_order_posts_the_order_and_returns_its_id():
    session = FakeSession(FakeResponse({"id": "order-1", "status": "accepted"}))
    broker = AlpacaBroker("paper", "key", "secret", session)
    assert broker.submit_market_order("AAPL", 1.5, "buy", client_order_id="2024-01-02:AAPL") == "order-1"
    method, url, kwargs = session.calls[0]
    assert (method, url) == ("POST", "https://paper-api.alpaca.markets/v2/orders")
    assert kwargs["headers"] == {"APCA-API-KEY-ID": "key", "APCA-API-SECRET-KEY": "secret"}
    assert kwargs["json"] == {"symbol": "AAPL", "qty": "1.5", "side": "buy", "type": "market",
                              "time_in_force": "day", "client_order_id": "2024-01-02:AAPL"}
    assert kwargs["timeout"] > 0


def test_bad_orders_are_refused_before_any_request_and_http_errors_raise():
    session = FakeSession(FakeResponse({"message": "insufficient buying power"}, status=403))
    broker = AlpacaBroker("live", "k", "s", session)
    with pytest.raises(ValueError, match="side"):
        broker.submit_market_order("AAPL", 1, "short")
    with pytest.raises(ValueError, match="qty"):
        broker.submit_market_order("AAPL", 0, "buy")
    assert session.calls == []
    with pytest.raises(requests.HTTPError):
        broker.submit_market_order("AAPL", 1, "sell")
    assert session.calls[0][1] == "https://api.alpaca.markets/v2/orders"


def test_get_positions_parses_alpaca_strings():
    session = FakeSession(FakeResponse([
        {"symbol": "AAPL", "qty": "3.5", "avg_entry_price": "180.25", "market_value": "640.5"},
    ]))
    positions = AlpacaBroker("paper", "k", "s", session).get_positions()
    assert positions.to_dict("records") == [
        {"ticker": "AAPL", "quantity": 3.5, "avg_entry_price_usd": 180.25, "market_value_usd": 640.5}]
    assert session.calls[0][:2] == ("GET", "https://paper-api.alpaca.markets/v2/positions")
    assert AlpacaBroker("paper", "k", "s", FakeSession(FakeResponse([]))).get_positions().empty


def test_from_env_requires_both_credentials():
    with pytest.raises(RuntimeError, match="APCA_API_SECRET_KEY"):
        AlpacaBroker.from_env("paper", env={"APCA_API_KEY_ID": "k"})
    broker = AlpacaBroker.from_env("live", env={"APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s"},
                                   session=FakeSession())
    assert broker.base_url == "https://api.alpaca.markets"


# --- trading mode and persisted policy (Postgres) ---------------------------------------

def _mode_and_changes(engine):
    with engine.connect() as conn:
        mode = conn.execute(sa.text("SELECT trading_mode FROM reference_portfolio_config")).scalar_one()
        changes = conn.execute(sa.text(
            "SELECT old_mode, new_mode, changed_by, reason, confirmed, env_flag_set, outcome"
            " FROM trading_mode_changes ORDER BY change_id")).all()
    return mode, [tuple(c) for c in changes]


@pytest.mark.parametrize(("confirm", "env"), [
    (False, {ALLOW_LIVE_ENV: "1"}),
    (True, {}),
    (True, {ALLOW_LIVE_ENV: "true"}),
])
def test_going_live_without_confirmation_and_flag_is_refused_and_audited(engine, confirm, env):
    with engine.begin() as conn, pytest.raises(LiveTradingNotAllowed, match="live"):
        switch_trading_mode(conn, "live", confirm=confirm, changed_by="ops", reason="try", env=env)
    # The caller's transaction rolled back; the refusal's audit row was committed on its own.
    assert _mode_and_changes(engine) == (
        "paper", [("paper", "live", "ops", "try", confirm, env.get(ALLOW_LIVE_ENV) == "1", "refused")])


def test_switching_to_the_current_mode_changes_and_records_nothing(engine):
    with engine.connect() as conn:
        assert switch_trading_mode(conn, "paper", confirm=False, changed_by="ops", reason=None, env={}) is False
    assert _mode_and_changes(engine) == ("paper", [])


def test_switches_update_config_and_log_each_change(engine):
    with engine.begin() as conn:
        assert switch_trading_mode(conn, "live", confirm=True, changed_by="ops", reason="go",
                                   env={ALLOW_LIVE_ENV: "1"}) is True
    with engine.connect() as conn:  # no transaction open yet: the function opens its own
        switch_trading_mode(conn, "paper", confirm=False, changed_by="ops", reason="back", env={})
        conn.commit()
    assert _mode_and_changes(engine) == ("paper", [
        ("paper", "live", "ops", "go", True, True, "applied"),
        ("live", "paper", "ops", "back", False, False, "applied"),
    ])


def test_mode_update_and_log_are_one_transaction(engine):
    with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        switch_trading_mode(conn, "live", confirm=True, changed_by=None, reason=None,
                            env={ALLOW_LIVE_ENV: "1"})  # the log row violates NOT NULL
    assert _mode_and_changes(engine) == ("paper", [])


def test_read_policy_reads_the_persisted_config(engine):
    with engine.begin() as conn:
        assert read_policy(conn) == PortfolioPolicy()
        conn.execute(sa.text("UPDATE reference_portfolio_config SET max_open_positions = 12,"
                             " trailing_stop_frac = 0.15, ml_blend_weight = 0.3"))
        switch_trading_mode(conn, "live", confirm=True, changed_by="ops", reason=None,
                            env={ALLOW_LIVE_ENV: "1"})
        assert read_policy(conn) == dataclasses.replace(
            PortfolioPolicy(), max_open_positions=12, trailing_stop_frac=0.15, ml_blend_weight=0.3,
            trading_mode="live")


def _day_positions():
    return pd.DataFrame({
        "position_id": ["2024-01-02:AAA", "2023-12-01:BBB", "2023-12-05:CCC"],
        "signal_id": ["2024-01-02:AAA", "2023-12-01:BBB", "2023-12-05:CCC"],
        "ticker": ["AAA", "BBB", "CCC"], "quantity": [3.0, 2.0, 1.0],
        "entry_date": pd.to_datetime(["2024-01-03", "2023-12-04", "2023-12-06"]),
        "exit_date": pd.to_datetime([None, "2024-01-03", None]),
        "broker_order_id": [None, "old", "old2"],
    })


def test_live_day_orders_need_the_env_flag_in_the_running_process():
    session = FakeSession()
    broker = AlpacaBroker("live", "k", "s", session)
    with pytest.raises(LiveTradingNotAllowed):
        send_day_orders(broker, _day_positions(), "2024-01-03", env={})
    assert session.calls == [], "no order may leave without the flag"


def test_day_orders_buy_the_opened_and_sell_the_closed_with_signal_ids_as_client_ids():
    session = FakeSession(FakeResponse({"id": "o-buy"}), FakeResponse({"id": "o-sell"}))
    broker = AlpacaBroker("live", "k", "s", session)
    out = send_day_orders(broker, _day_positions(), "2024-01-03", env={ALLOW_LIVE_ENV: "1"})
    orders = [kwargs["json"] for _, _, kwargs in session.calls]
    assert [(o["symbol"], o["side"], o["client_order_id"]) for o in orders] == [
        ("AAA", "buy", "2024-01-02:AAA"), ("BBB", "sell", "2023-12-01:BBB:exit")]
    assert out["broker_order_id"].tolist() == ["o-buy", "old", "old2"]
