import dataclasses
import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.portfolio.broker import (
    ALLOW_LIVE_ENV,
    BASE_URL_ENV,
    AlpacaBroker,
    LiveTradingNotAllowed,
    exchange_today,
    plan_live_orders,
    read_broker_orders,
    read_policy,
    send_live_orders,
    switch_trading_mode,
    write_policy,
)
from feedback_loop.lib.vocab import ExitPolicy


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


@pytest.mark.parametrize("exit_policy", list(ExitPolicy))
def test_the_exit_policy_round_trips_with_the_persisted_config(engine, exit_policy):
    changed = dataclasses.replace(PortfolioPolicy(), exit_policy=exit_policy.value, hold_days=7,
                                  atr_stop_multiple=2.0, trailing_stop_frac=0.1, ml_blend_weight=0.4)
    with engine.connect() as conn:
        write_policy(conn, changed)
        assert read_policy(conn) == changed  # the trading mode is switched only by switch_trading_mode
        conn.rollback()
    with engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
        write_policy(conn, dataclasses.replace(changed, exit_policy="stop_everything"))


# --- live orders: the rule, and the sending against a fake broker on 127.0.0.1 --------

DAY = pd.Timestamp("2024-01-03")
LIVE_ENV = {ALLOW_LIVE_ENV: "1"}


def _day_positions(day=DAY):
    """AAA opened on `day`; BBB (opened live earlier) and CCC (opened in paper mode) closed on it."""
    return pd.DataFrame({
        "position_id": ["P:AAA", "P:BBB", "P:CCC"],
        "signal_id": ["P:AAA", "P:BBB", "P:CCC"],
        "ticker": ["AAA", "BBB", "CCC"], "quantity": [3.0, 2.0, 1.0],
        "entry_date": [day, day - pd.Timedelta(days=30), day - pd.Timedelta(days=20)],
        "exit_date": [pd.NaT, day, day],
        "broker_order_id": [None, "old", None],
    })


def _sent(*rows):
    return pd.DataFrame(rows, columns=["client_order_id", "position_id", "side"])


BBB_HELD = _sent(("P:BBB", "P:BBB", "buy"))


def _plan(day=DAY, today=DAY.date(), mode="live", confirmed=True, env=LIVE_ENV, sent=BBB_HELD):  # noqa: B008
    return plan_live_orders(_day_positions(day), day, today=today, trading_mode=mode, switch_confirmed=confirmed,
                            env=env, sent_orders=sent)


def test_plan_sends_today_buys_and_only_exits_of_positions_the_broker_holds():
    plan = _plan()
    assert plan.orders[["client_order_id", "side", "ticker", "quantity"]].values.tolist() == [
        ["P:AAA", "buy", "AAA", 3.0], ["P:BBB:exit", "sell", "BBB", 2.0]]
    assert "1 exit(s) of positions the broker never held not sent" in plan.note


@pytest.mark.parametrize(("kwargs", "note"), [
    ({"today": dt.date(2024, 1, 4)}, "not the current trading day"),
    ({"mode": "paper"}, "paper mode"),
    ({"today": dt.date(2025, 6, 2), "env": {}, "confirmed": False}, "not the current trading day"),
])
def test_plan_sends_nothing_for_past_days_or_paper_mode(kwargs, note):
    plan = _plan(**kwargs)
    assert plan.orders.empty
    assert note in plan.note


@pytest.mark.parametrize(("kwargs", "missing"), [({"env": {}}, ALLOW_LIVE_ENV), ({"confirmed": False}, "confirmed")])
def test_plan_needs_both_keys_for_today(kwargs, missing):
    with pytest.raises(LiveTradingNotAllowed, match=missing):
        _plan(**kwargs)


def test_plan_leaves_out_orders_already_sent():
    plan = _plan(sent=_sent(("P:BBB", "P:BBB", "buy"), ("P:AAA", "P:AAA", "buy")))
    assert plan.orders["client_order_id"].tolist() == ["P:BBB:exit"]
    assert "1 already sent" in plan.note


def test_exchange_today_is_the_new_york_date():
    assert exchange_today(dt.datetime(2024, 1, 4, 3, 0, tzinfo=dt.UTC)) == dt.date(2024, 1, 3)
    assert exchange_today(dt.datetime(2024, 1, 4, 15, 0, tzinfo=dt.UTC)) == dt.date(2024, 1, 4)


class FakeAlpaca:
    """An Alpaca-like order endpoint on 127.0.0.1 that, like Alpaca, refuses a repeated client_order_id (422)."""

    def __init__(self):
        self.posts, self.orders = [], {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                order = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.posts.append(order)
                if order["client_order_id"] in fake.orders:
                    return self._answer(422, {"message": "client_order_id must be unique"})
                fake.orders[order["client_order_id"]] = {"id": str(uuid.uuid4()), **order}
                self._answer(200, fake.orders[order["client_order_id"]])

            def do_GET(self):
                url = urlparse(self.path)
                client_id = parse_qs(url.query)["client_order_id"][0]
                self._answer(200, fake.orders[client_id])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def broker(self):
        return AlpacaBroker.from_env("live", env={"APCA_API_KEY_ID": "k", "APCA_API_SECRET_KEY": "s",
                                                  BASE_URL_ENV: self.url})


@pytest.fixture
def fake_alpaca():
    fake = FakeAlpaca()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _go_live(engine, bbb_opened_live=True):
    with engine.begin() as conn:
        switch_trading_mode(conn, "live", confirm=True, changed_by="ops", reason="test", env=LIVE_ENV)
        if bbb_opened_live:
            conn.execute(sa.text(
                "INSERT INTO broker_orders (client_order_id, position_id, trade_date, side, ticker, quantity,"
                " trading_mode, broker_order_id) VALUES ('P:BBB', 'P:BBB', '2023-12-04', 'buy', 'BBB', 2, 'live', 'old')"))


def test_rerunning_past_days_in_live_mode_sends_no_orders(engine, fake_alpaca):
    _go_live(engine)
    for day in (pd.Timestamp("2024-01-03"), pd.Timestamp("2024-01-04")):
        _, metadata = send_live_orders(engine, fake_alpaca.broker, _day_positions(day), day,
                                               today=dt.date(2025, 6, 2), trading_mode="live", env=LIVE_ENV)
        assert metadata["live_orders_sent"] == 0
        assert "re-runs of past days send no orders" in metadata["live_orders_note"]
    assert fake_alpaca.posts == []
    with engine.connect() as conn:
        assert read_broker_orders(conn)["client_order_id"].tolist() == ["P:BBB"]


def test_todays_orders_are_sent_once_however_often_the_day_runs(engine, fake_alpaca):
    _go_live(engine)
    run = lambda: send_live_orders(engine, fake_alpaca.broker, _day_positions(), DAY,
                                   today=DAY.date(), trading_mode="live", env=LIVE_ENV)
    positions, metadata = run()
    assert metadata["live_orders_sent"] == 2
    assert [(o["symbol"], o["side"], o["client_order_id"]) for o in fake_alpaca.posts] == [
        ("AAA", "buy", "P:AAA"), ("BBB", "sell", "P:BBB:exit")], "CCC was never held at the broker"
    assert positions["broker_order_id"].tolist()[:2] == [fake_alpaca.orders["P:AAA"]["id"], "old"]
    assert pd.isna(positions["broker_order_id"].iloc[2])
    assert run()[1]["live_orders_sent"] == 0
    assert len(fake_alpaca.posts) == 2, "a second run of today sends nothing"
    with engine.begin() as conn:  # the records of today's sends are lost (a crash after sending)
        conn.execute(sa.text("DELETE FROM broker_orders WHERE trade_date = :d"), {"d": DAY.date()})
    positions, _ = run()
    assert len(fake_alpaca.orders) == 2, "the broker refused the repeated client order ids"
    assert positions["broker_order_id"].iloc[0] == fake_alpaca.orders["P:AAA"]["id"]
    with engine.connect() as conn:
        recorded = read_broker_orders(conn).set_index("client_order_id")["broker_order_id"]
    assert recorded.to_dict() == {"P:BBB": "old", "P:AAA": fake_alpaca.orders["P:AAA"]["id"],
                                  "P:BBB:exit": fake_alpaca.orders["P:BBB:exit"]["id"]}


def test_live_orders_refused_without_the_confirmed_switch(engine, fake_alpaca):
    with engine.begin() as conn:  # live set behind the switch's back: one key only
        conn.execute(sa.text("UPDATE reference_portfolio_config SET trading_mode = 'live'"))
    with pytest.raises(LiveTradingNotAllowed, match="confirmed"):
        send_live_orders(engine, fake_alpaca.broker, _day_positions(), DAY, today=DAY.date(),
                         trading_mode="live", env=LIVE_ENV)
    assert fake_alpaca.posts == []
