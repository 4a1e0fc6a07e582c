import pytest
import sqlalchemy as sa

from feedback_loop.lib import policy, vocab
from feedback_loop.lib.store import db
from feedback_loop.lib.store.pgcluster import LocalCluster


def test_cluster_up_is_idempotent_and_loopback_only(pg_cluster: LocalCluster):
    assert pg_cluster.up() == pg_cluster.url()  # second call: already running, no error
    engine = sa.create_engine(pg_cluster.url())
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
        databases = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
    engine.dispose()
    assert {"feedback_loop", "dagster"} <= databases


def test_migrate_twice_applies_nothing_the_second_time(engine):
    assert db.migrate(engine) == []  # the template already applied everything
    with engine.connect() as conn:
        applied = conn.execute(sa.text("SELECT filename FROM schema_migrations ORDER BY 1")).scalars().all()
    assert applied == [p.name for p in db.migration_files()]


def test_only_one_active_model_is_allowed(engine):
    insert = sa.text(
        "INSERT INTO ml_models (model_id, version, status, trained_as_of, num_classes, config, feature_names)"
        " VALUES (:id, :id, 'active', '2020-01-01', 5, '{}', '[]')"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"id": "m1"})
    try:
        with engine.begin() as conn:
            conn.execute(insert, {"id": "m2"})
    except sa.exc.IntegrityError:
        pass
    else:
        raise AssertionError("a second active model was accepted")


def test_config_defaults_match_policy(engine):
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM reference_portfolio_config")).mappings().one()
    defaults = policy.PortfolioPolicy()
    for field in defaults.__dataclass_fields__:
        assert row[field] == getattr(defaults, field), field


def test_blend_weight_bounds_enforced(engine):
    """The table's CHECK is the policy's range exactly: its bounds are accepted (else the policy
    widened and the table did not) and just beyond them rejected (else the policy narrowed)."""
    with engine.begin() as conn:
        (default,) = conn.execute(sa.text("SELECT ml_blend_weight FROM reference_portfolio_config")).one()
        for bound in (policy.BLEND_WEIGHT_MIN, policy.BLEND_WEIGHT_MAX):
            conn.execute(sa.text("UPDATE reference_portfolio_config SET ml_blend_weight = :w"), {"w": bound})
        conn.execute(sa.text("UPDATE reference_portfolio_config SET ml_blend_weight = :w"), {"w": default})
    for bad in (policy.BLEND_WEIGHT_MIN - 0.01, policy.BLEND_WEIGHT_MAX + 0.01):
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE reference_portfolio_config SET ml_blend_weight = :w"), {"w": bad})
        except sa.exc.IntegrityError:
            continue
        raise AssertionError(f"blend weight {bad} accepted")


def _check_values(engine, table: str, column: str) -> set[str]:
    """Values of the CHECK (column IN (...)) constraint on table.column, read from the catalog."""
    with engine.connect() as conn:
        defs = conn.execute(sa.text(
            "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " WHERE t.relname = :t AND c.contype = 'c'"
        ), {"t": table}).scalars().all()
    import re

    for definition in defs:
        if re.search(rf"\b{column}\b", definition) and "ANY" in definition:
            return set(re.findall(r"'([^']*)'::text", definition))
    raise AssertionError(f"no enumerated CHECK on {table}.{column}")


ENUM_COLUMNS = {
    vocab.TransactionType: [("disclosures", "transaction_type")],
    vocab.AssetType: [("disclosures", "asset_type")],
    vocab.Party: [("politicians", "party"), ("disclosures", "party")],
    vocab.Chamber: [("politicians", "chamber"), ("disclosures", "chamber")],
    vocab.DisclosureSource: [("disclosures", "source")],
    vocab.SignalType: [("trading_signals", "signal_type"), ("trading_signals", "heuristic_signal_type"),
                       ("trading_signals", "ml_signal_type"), ("signal_outcomes", "signal_type"),
                       ("ml_predictions", "predicted_class"), ("heuristic_signals", "heuristic_signal_type"),
                       ("heuristic_signals", "ml_signal_type")],
    vocab.BlendCase: [("trading_signals", "blend_case")],
    vocab.ServingPath: [("trading_signals", "serving_path"), ("ml_predictions", "serving_path")],
    vocab.SignalStatus: [("trading_signals", "status")],
    vocab.PositionStatus: [("portfolio_positions", "status")],
    vocab.ExitReason: [("portfolio_positions", "exit_reason"), ("signal_outcomes", "exit_reason")],
    vocab.Outcome: [("signal_outcomes", "outcome"), ("shadow_outcomes", "heuristic_outcome"),
                    ("shadow_outcomes", "ml_outcome"), ("shadow_outcomes", "challenger_outcome")],
    vocab.ModelStatus: [("ml_models", "status")],
    vocab.RetrainTrigger: [("ml_models", "trigger"), ("model_deployments", "trigger"),
                           ("model_retraining_events", "trigger")],
    vocab.DeploymentAction: [("model_deployments", "action")],
    vocab.DriftRecommendation: [("drift_reports", "recommendation")],
    vocab.TradingMode: [("reference_portfolio_config", "trading_mode"), ("portfolio_positions", "trading_mode"),
                        ("trading_mode_changes", "new_mode"), ("broker_orders", "trading_mode")],
    vocab.OrderSide: [("broker_orders", "side")],
    vocab.PredictionRole: [("ml_predictions", "role")],
    vocab.ModeChangeOutcome: [("trading_mode_changes", "outcome")],
    vocab.ExitPolicy: [("reference_portfolio_config", "exit_policy")],
}


def test_every_enumerated_value_is_accepted_by_the_database(engine):
    """The CHECK lists equal the enums, and each value really inserts (defect 5 of the old system)."""
    for enum, columns in ENUM_COLUMNS.items():
        for table, column in columns:
            assert _check_values(engine, table, column) == {e.value for e in enum}, (table, column)
    # Write every value for real through the tables that carry the most enums.
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ml_models (model_id, version, status, trained_as_of, num_classes, config, feature_names)"
            " VALUES ('m', 'm', 'candidate', '2020-01-01', 5, '{}', '[]')"))
        for i, status in enumerate(vocab.ModelStatus):
            if status is not vocab.ModelStatus.ACTIVE:
                conn.execute(sa.text(
                    "INSERT INTO ml_models (model_id, version, status, trained_as_of, num_classes, config, feature_names, trigger)"
                    " VALUES (:id, :id, :s, '2020-01-01', 3, '{}', '[]', :t)"),
                    {"id": f"s{i}", "s": status.value, "t": list(vocab.RetrainTrigger)[i % 5].value})
        for trigger in vocab.RetrainTrigger:
            conn.execute(sa.text(
                "INSERT INTO model_retraining_events (as_of, trigger, deployed, reason) VALUES ('2020-01-01', :t, false, 'x')"),
                {"t": trigger.value})
        for i, (stype, case, path, status) in enumerate(zip(
            _cycle(vocab.SignalType, 10), _cycle(vocab.BlendCase, 10), _cycle(vocab.ServingPath, 10), list(vocab.SignalStatus)
        )):
            conn.execute(sa.text(
                "INSERT INTO trading_signals (signal_id, as_of, ticker, signal_type, confidence, heuristic_signal_type,"
                " heuristic_confidence, ml_signal_type, blend_weight, blend_case, ml_enhanced, serving_path, status, features)"
                " VALUES (:id, '2020-01-02', :t, :st, 0.8, :st, 0.8, :st, 0.2, :c, true, :p, :s, '{}')"),
                {"id": f"sig{i}", "t": f"T{i}", "st": stype.value, "c": case.value, "p": path.value, "s": status.value})
        for i, reason in enumerate(vocab.ExitReason):
            conn.execute(sa.text(
                "INSERT INTO portfolio_positions (position_id, signal_id, ticker, status, trading_mode, quantity, entry_date,"
                " entry_price, stop_loss_price, highest_close, confidence, exit_date, exit_price, exit_reason)"
                " VALUES (:id, :id, 'X', 'closed', :m, 1, '2020-01-03', 10, 9, 10, 0.8, '2020-02-01', 11, :r)"),
                {"id": f"sig{i}", "r": reason.value, "m": list(vocab.TradingMode)[i % 2].value})
            outcome = list(vocab.Outcome)[i % 4]
            conn.execute(sa.text(
                "INSERT INTO signal_outcomes (position_id, signal_id, ticker, signal_type, confidence, entry_date, entry_price,"
                " outcome, exit_reason, features, ml_enhanced) VALUES (:id, :id, 'X', 'buy', 0.8, '2020-01-03', 10, :o, :r, '{}', false)"),
                {"id": f"sig{i}", "o": outcome.value, "r": reason.value})
        for i, rec in enumerate(vocab.DriftRecommendation):
            conn.execute(sa.text(
                "INSERT INTO drift_reports (as_of, model_id, recommendation, drifting_features, ks_statistics, live_rows,"
                " reference_rows, resolved_outcomes, reason) VALUES (:d, 'm', :r, '[]', '{}', 0, 0, 0, 'x')"),
                {"d": f"2020-01-0{i + 1}", "r": rec.value})


def _cycle(enum, n):
    values = list(enum)
    return [values[i % len(values)] for i in range(n)]


def test_has_unique_index_needs_a_valid_total_unique_index_within_the_columns(engine):
    with engine.begin() as conn:
        assert db.has_unique_index(conn, "prices", ["ticker", "date"])  # the primary key
        assert db.has_unique_index(conn, "prices", ["date", "ticker", "close"])  # unique on a subset
        assert not db.has_unique_index(conn, "prices", ["ticker"])
        conn.execute(sa.text("ALTER TABLE prices DROP CONSTRAINT prices_pkey"))
        assert not db.has_unique_index(conn, "prices", ["ticker", "date"])  # prices_date_idx is not unique
        conn.execute(sa.text("CREATE UNIQUE INDEX partial ON prices (ticker, date) WHERE close > 0"))
        conn.execute(sa.text("CREATE UNIQUE INDEX by_expression ON prices (ticker, (date + 1))"))
        assert not db.has_unique_index(conn, "prices", ["ticker", "date"])
        conn.execute(sa.text("CREATE UNIQUE INDEX covering ON prices (ticker, date) INCLUDE (close)"))
        assert db.has_unique_index(conn, "prices", ["ticker", "date"])


@pytest.mark.filterwarnings("ignore::dagster.PreviewWarning")  # importing partitioned asset checks
def test_prices_uniqueness_check_trusts_the_primary_key_and_counts_without_it(db_url):
    from feedback_loop.defs.ingest import prices_are_unique_per_ticker_day
    from feedback_loop.defs.resources import DatabaseResource

    database = DatabaseResource(url=db_url)
    enforced = prices_are_unique_per_ticker_day(database=database)
    assert enforced.passed and enforced.metadata["enforced_by_unique_index"].value is True
    insert = sa.text("INSERT INTO prices (ticker, date, close, adj_close) VALUES ('AAA', '2020-01-02', 1, 1)")
    with database.get_engine().begin() as conn:
        conn.execute(sa.text("ALTER TABLE prices DROP CONSTRAINT prices_pkey"))
        conn.execute(insert)
    unique = prices_are_unique_per_ticker_day(database=database)
    assert unique.passed and unique.metadata["enforced_by_unique_index"].value is False
    with database.get_engine().begin() as conn:
        conn.execute(insert)
    duplicated = prices_are_unique_per_ticker_day(database=database)
    assert not duplicated.passed and duplicated.metadata["duplicate_rows"].value == 1


@pytest.mark.filterwarnings("ignore::dagster.PreviewWarning")  # importing partitioned asset checks
def test_prices_positivity_check_trusts_the_constraint_and_counts_without_it(db_url):
    from feedback_loop.defs.ingest import prices_are_positive
    from feedback_loop.defs.resources import DatabaseResource

    database = DatabaseResource(url=db_url)
    enforced = prices_are_positive(database=database)
    assert enforced.passed and enforced.metadata["enforced_by_constraint"].value is True
    bad = sa.text("INSERT INTO prices (ticker, date, open, close, adj_close) VALUES ('AAA', '2020-01-02', 0, 1, 1)")
    with pytest.raises(sa.exc.IntegrityError, match="prices_are_positive"), database.get_engine().begin() as conn:
        conn.execute(bad)
    with database.get_engine().begin() as conn:
        conn.execute(sa.text("ALTER TABLE prices DROP CONSTRAINT prices_are_positive"))
        conn.execute(sa.text("INSERT INTO prices (ticker, date, close, adj_close) VALUES ('AAA', '2020-01-03', 1, 1)"))
    counted = prices_are_positive(database=database)
    assert counted.passed and counted.metadata["enforced_by_constraint"].value is False
    with database.get_engine().begin() as conn:
        conn.execute(bad)
    broken = prices_are_positive(database=database)
    assert not broken.passed and broken.metadata["non_positive_rows"].value == 1
