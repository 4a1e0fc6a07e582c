import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib import db


def test_upsert_twice_keeps_one_row_per_key_and_updates_values(engine):
    frame = pd.DataFrame({
        "ticker": ["AAA", "AAA"], "date": pd.to_datetime(["2020-01-02", "2020-01-03"]),
        "close": [10.0, float("nan")], "adj_close": [10.0, 11.0], "open": [None, 1.0],
    })
    frame.loc[1, "close"] = 11.0
    with engine.begin() as conn:
        db.upsert_frame(conn, "prices", frame, ["ticker", "date"])
        frame.loc[0, "close"] = 12.0
        db.upsert_frame(conn, "prices", frame, ["ticker", "date"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT date, close FROM prices ORDER BY date")).all()
    assert [r.close for r in rows] == [12.0, 11.0]
