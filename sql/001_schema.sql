-- The whole schema of the loop. Later migrations only add columns.
-- Every CHECK list mirrors an enumeration in feedback_loop/lib/vocab.py.

CREATE TABLE politicians (
    politician_id   TEXT PRIMARY KEY,
    full_name       TEXT NOT NULL,
    first_name      TEXT,
    last_name       TEXT,
    party           TEXT CHECK (party IN ('D', 'R', 'I')),
    chamber         TEXT CHECK (chamber IN ('house', 'senate')),
    state           TEXT,
    bioguide_id     TEXT,
    source          TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE disclosures (
    disclosure_id       TEXT PRIMARY KEY,          -- sha256 of the natural key
    source              TEXT NOT NULL CHECK (source IN ('house', 'senate', 'synthetic')),
    politician_id       TEXT REFERENCES politicians (politician_id),
    filer_name          TEXT NOT NULL,
    chamber             TEXT CHECK (chamber IN ('house', 'senate')),
    party               TEXT CHECK (party IN ('D', 'R', 'I')),
    state               TEXT,
    ticker              TEXT,                      -- NULL: no ticker on the filing
    asset_description   TEXT,
    asset_type          TEXT NOT NULL CHECK (asset_type IN ('stock', 'etf', 'bond', 'option', 'fund', 'crypto', 'other')),
    transaction_type    TEXT NOT NULL CHECK (transaction_type IN ('purchase', 'sale_full', 'sale_partial', 'exchange')),
    transaction_date    DATE NOT NULL,
    disclosure_date     DATE NOT NULL,             -- filing date: when the trade became public
    amount_min_usd      DOUBLE PRECISION NOT NULL CHECK (amount_min_usd >= 0),
    amount_max_usd      DOUBLE PRECISION CHECK (amount_max_usd IS NULL OR amount_max_usd >= amount_min_usd),
    owner               TEXT,
    ptr_link            TEXT,
    duplicate_count     INTEGER NOT NULL DEFAULT 1 CHECK (duplicate_count >= 1),
    filed_before_trade  BOOLEAN NOT NULL DEFAULT FALSE,
    ingested_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX disclosures_disclosure_date_idx ON disclosures (disclosure_date);
CREATE INDEX disclosures_ticker_idx ON disclosures (ticker);

CREATE TABLE disclosure_rejects (
    reject_id       BIGSERIAL PRIMARY KEY,
    source          TEXT NOT NULL,
    row_hash        TEXT NOT NULL,                 -- sha256 of the raw row: re-ingest never duplicates
    raw_row         JSONB NOT NULL,
    reason          TEXT NOT NULL,
    rejected_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (source, row_hash)
);

CREATE TABLE prices (
    ticker      TEXT NOT NULL,
    date        DATE NOT NULL,
    open        DOUBLE PRECISION,
    high        DOUBLE PRECISION,
    low         DOUBLE PRECISION,
    close       DOUBLE PRECISION NOT NULL,
    adj_close   DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION,
    PRIMARY KEY (ticker, date)
);
CREATE INDEX prices_date_idx ON prices (date);

CREATE TABLE ticker_sectors (
    ticker  TEXT PRIMARY KEY,
    sector  TEXT NOT NULL
);

CREATE TABLE ml_models (
    model_id            TEXT PRIMARY KEY,
    version             TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL CHECK (status IN ('training', 'candidate', 'active', 'archived', 'failed')),
    trained_as_of       DATE NOT NULL,
    trigger             TEXT CHECK (trigger IN ('scheduled', 'manual', 'new_outcomes', 'feature_drift', 'performance_degradation')),
    num_classes         INTEGER NOT NULL CHECK (num_classes IN (3, 5)),
    training_start      DATE,
    training_end        DATE,
    config              JSONB NOT NULL,
    feature_names       JSONB NOT NULL,
    metrics             JSONB NOT NULL DEFAULT '{}'::jsonb,
    model_card          JSONB NOT NULL DEFAULT '{}'::jsonb,
    artifact_path       TEXT,
    artifact_sha256     TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    promoted_at         TIMESTAMPTZ,
    archived_at         TIMESTAMPTZ
);
-- At most one active model, enforced by the database.
CREATE UNIQUE INDEX ml_models_one_active ON ml_models ((TRUE)) WHERE status = 'active';

-- Which model served from which date: the champion as of D is the latest row with effective_from <= D.
CREATE TABLE model_deployments (
    deployment_id   BIGSERIAL PRIMARY KEY,
    model_id        TEXT NOT NULL REFERENCES ml_models (model_id),
    action          TEXT NOT NULL CHECK (action IN ('promote', 'rollback')),
    trigger         TEXT NOT NULL CHECK (trigger IN ('scheduled', 'manual', 'new_outcomes', 'feature_drift', 'performance_degradation')),
    effective_from  DATE NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE reference_portfolio_config (
    id                          BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),   -- singleton
    ml_blend_weight             DOUBLE PRECISION NOT NULL DEFAULT 0.20 CHECK (ml_blend_weight BETWEEN 0.10 AND 0.70),
    trading_mode                TEXT NOT NULL DEFAULT 'paper' CHECK (trading_mode IN ('paper', 'live')),
    min_signal_confidence       DOUBLE PRECISION NOT NULL DEFAULT 0.65,
    min_queue_confidence        DOUBLE PRECISION NOT NULL DEFAULT 0.75,
    risk_check_confidence       DOUBLE PRECISION NOT NULL DEFAULT 0.70,
    risk_check_open_positions   INTEGER NOT NULL DEFAULT 15,
    max_open_positions          INTEGER NOT NULL DEFAULT 30,
    max_hold_days               INTEGER NOT NULL DEFAULT 60,
    trailing_stop_frac          DOUBLE PRECISION NOT NULL DEFAULT 0.20,
    atr_stop_multiple           DOUBLE PRECISION NOT NULL DEFAULT 1.5,
    atr_window_days             INTEGER NOT NULL DEFAULT 20,
    fallback_stop_frac          DOUBLE PRECISION NOT NULL DEFAULT 0.10,
    initial_capital             DOUBLE PRECISION NOT NULL DEFAULT 100000,
    base_position_frac          DOUBLE PRECISION NOT NULL DEFAULT 0.02,
    max_position_frac           DOUBLE PRECISION NOT NULL DEFAULT 0.05,
    shadow_horizon_days         INTEGER NOT NULL DEFAULT 20,
    updated_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO reference_portfolio_config (id) VALUES (TRUE);

CREATE TABLE trading_signals (
    signal_id               TEXT PRIMARY KEY,      -- '<as_of>:<ticker>'
    as_of                   DATE NOT NULL,
    ticker                  TEXT NOT NULL,
    signal_type             TEXT NOT NULL CHECK (signal_type IN ('strong_sell', 'sell', 'hold', 'buy', 'strong_buy')),
    confidence              DOUBLE PRECISION NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    heuristic_signal_type   TEXT NOT NULL CHECK (heuristic_signal_type IN ('strong_sell', 'sell', 'hold', 'buy', 'strong_buy')),
    heuristic_confidence    DOUBLE PRECISION NOT NULL,
    ml_signal_type          TEXT CHECK (ml_signal_type IN ('strong_sell', 'sell', 'hold', 'buy', 'strong_buy')),
    ml_confidence           DOUBLE PRECISION,
    blend_weight            DOUBLE PRECISION NOT NULL,
    blend_case              TEXT NOT NULL CHECK (blend_case IN ('heuristic_only', 'agree', 'same_direction', 'opposite', 'ml_neutral')),
    ml_enhanced             BOOLEAN NOT NULL,
    model_id                TEXT REFERENCES ml_models (model_id),
    model_version           TEXT,
    serving_path            TEXT NOT NULL CHECK (serving_path IN ('no_champion', 'champion', 'previous_champion', 'heuristic_fallback', 'heuristic_arm')),
    status                  TEXT NOT NULL CHECK (status IN ('below_queue_threshold', 'direction_disagreement', 'queued', 'filled', 'closed_long', 'skipped_risk', 'skipped_max_positions', 'skipped_no_price', 'skipped_already_held', 'skipped_no_position')),
    features                JSONB NOT NULL,        -- the exact feature vector that was scored
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (as_of, ticker)
);
CREATE INDEX trading_signals_as_of_idx ON trading_signals (as_of);

CREATE TABLE portfolio_positions (
    position_id         TEXT PRIMARY KEY,          -- the opening signal's id
    signal_id           TEXT NOT NULL UNIQUE REFERENCES trading_signals (signal_id),
    ticker              TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    trading_mode        TEXT NOT NULL CHECK (trading_mode IN ('paper', 'live')),
    quantity            DOUBLE PRECISION NOT NULL CHECK (quantity > 0),
    entry_date          DATE NOT NULL,
    entry_price         DOUBLE PRECISION NOT NULL CHECK (entry_price > 0),
    stop_loss_price     DOUBLE PRECISION NOT NULL,
    highest_close       DOUBLE PRECISION NOT NULL,
    confidence          DOUBLE PRECISION NOT NULL,
    exit_date           DATE,
    exit_price          DOUBLE PRECISION,
    exit_reason         TEXT CHECK (exit_reason IN ('timeout', 'trailing_stop', 'stop_loss', 'sell_signal', 'manual')),
    broker_order_id     TEXT,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((status = 'open') = (exit_date IS NULL))
);

CREATE TABLE signal_outcomes (
    position_id         TEXT PRIMARY KEY REFERENCES portfolio_positions (position_id),
    signal_id           TEXT NOT NULL REFERENCES trading_signals (signal_id),
    ticker              TEXT NOT NULL,
    signal_type         TEXT NOT NULL CHECK (signal_type IN ('strong_sell', 'sell', 'hold', 'buy', 'strong_buy')),
    confidence          DOUBLE PRECISION NOT NULL,
    entry_date          DATE NOT NULL,
    exit_date           DATE,
    entry_price         DOUBLE PRECISION NOT NULL,
    exit_price          DOUBLE PRECISION,
    return_pct          DOUBLE PRECISION,
    spy_return_pct      DOUBLE PRECISION,
    excess_return_pct   DOUBLE PRECISION,
    holding_days        INTEGER,
    outcome             TEXT NOT NULL CHECK (outcome IN ('win', 'loss', 'breakeven', 'open')),
    exit_reason         TEXT CHECK (exit_reason IN ('timeout', 'trailing_stop', 'stop_loss', 'sell_signal', 'manual')),
    features            JSONB NOT NULL,            -- same keys as the model's features
    model_id            TEXT REFERENCES ml_models (model_id),
    model_version       TEXT,
    ml_enhanced         BOOLEAN NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX signal_outcomes_exit_date_idx ON signal_outcomes (exit_date);

-- Realized return of every generated signal, traded or not, so model and heuristic compare on the same signals.
CREATE TABLE shadow_outcomes (
    signal_id               TEXT PRIMARY KEY REFERENCES trading_signals (signal_id),
    ticker                  TEXT NOT NULL,
    as_of                   DATE NOT NULL,
    entry_date              DATE NOT NULL,
    exit_date               DATE NOT NULL,         -- when the outcome resolved
    horizon_days            INTEGER NOT NULL,
    return_pct              DOUBLE PRECISION NOT NULL,
    spy_return_pct          DOUBLE PRECISION,
    heuristic_signal_type   TEXT NOT NULL,
    ml_signal_type          TEXT,
    challenger_signal_type  TEXT,
    heuristic_outcome       TEXT NOT NULL CHECK (heuristic_outcome IN ('win', 'loss', 'breakeven', 'open')),
    ml_outcome              TEXT CHECK (ml_outcome IN ('win', 'loss', 'breakeven', 'open')),
    challenger_outcome      TEXT CHECK (challenger_outcome IN ('win', 'loss', 'breakeven', 'open')),
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX shadow_outcomes_exit_date_idx ON shadow_outcomes (exit_date);

CREATE TABLE ml_model_comparisons (
    comparison_id           BIGSERIAL PRIMARY KEY,
    as_of                   DATE NOT NULL,
    new_model_id            TEXT NOT NULL REFERENCES ml_models (model_id),
    current_model_id        TEXT REFERENCES ml_models (model_id),
    new_accuracy            DOUBLE PRECISION NOT NULL,
    current_accuracy        DOUBLE PRECISION,
    new_f1                  DOUBLE PRECISION NOT NULL,
    current_f1              DOUBLE PRECISION,
    holdout_rows            INTEGER NOT NULL,
    new_shadow_win_rate     DOUBLE PRECISION,
    current_shadow_win_rate DOUBLE PRECISION,
    promoted                BOOLEAN NOT NULL,
    reason                  TEXT NOT NULL,
    details                 JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE model_retraining_events (
    event_id            BIGSERIAL PRIMARY KEY,
    as_of               DATE NOT NULL,
    trigger             TEXT NOT NULL CHECK (trigger IN ('scheduled', 'manual', 'new_outcomes', 'feature_drift', 'performance_degradation')),
    dagster_run_id      TEXT,
    old_model_id        TEXT REFERENCES ml_models (model_id),
    new_model_id        TEXT REFERENCES ml_models (model_id),
    old_metrics         JSONB,
    new_metrics         JSONB,
    accuracy_improvement DOUBLE PRECISION,
    f1_improvement      DOUBLE PRECISION,
    deployed            BOOLEAN NOT NULL,
    reason              TEXT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE model_performance_history (
    as_of               DATE NOT NULL,
    scope               TEXT NOT NULL,             -- 'portfolio' or a replay arm name
    model_id            TEXT REFERENCES ml_models (model_id),
    trades              INTEGER NOT NULL,
    wins                INTEGER NOT NULL,
    losses              INTEGER NOT NULL,
    breakevens          INTEGER NOT NULL,
    win_rate            DOUBLE PRECISION,
    avg_return_pct      DOUBLE PRECISION,
    sharpe              DOUBLE PRECISION,
    sortino             DOUBLE PRECISION,
    max_drawdown_frac   DOUBLE PRECISION,
    profit_factor       DOUBLE PRECISION,
    excess_return_pct   DOUBLE PRECISION,
    metrics             JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of, scope)
);

CREATE TABLE feature_importance_history (
    id                      BIGSERIAL PRIMARY KEY,
    analysis_date           DATE NOT NULL,
    analysis_window_days    INTEGER,
    feature_name            TEXT NOT NULL,         -- '_ml_blend_weight' logs blend-weight moves
    model_id                TEXT REFERENCES ml_models (model_id),
    importance              DOUBLE PRECISION,
    correlation_with_return DOUBLE PRECISION,
    median_value            DOUBLE PRECISION,
    avg_return_when_high    DOUBLE PRECISION,
    avg_return_when_low     DOUBLE PRECISION,
    lift_pct                DOUBLE PRECISION,
    sample_size_total       INTEGER,
    feature_useful          BOOLEAN,
    details                 JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX feature_importance_history_key ON feature_importance_history (analysis_date, feature_name, COALESCE(model_id, ''));

CREATE TABLE ml_predictions (
    prediction_id   BIGSERIAL PRIMARY KEY,
    signal_id       TEXT NOT NULL REFERENCES trading_signals (signal_id),
    as_of           DATE NOT NULL,
    ticker          TEXT NOT NULL,
    model_id        TEXT NOT NULL REFERENCES ml_models (model_id),
    model_version   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('champion', 'shadow')),
    serving_path    TEXT NOT NULL CHECK (serving_path IN ('no_champion', 'champion', 'previous_champion', 'heuristic_fallback', 'heuristic_arm')),
    feature_hash    TEXT NOT NULL,
    probabilities   JSONB NOT NULL,
    predicted_class TEXT NOT NULL CHECK (predicted_class IN ('strong_sell', 'sell', 'hold', 'buy', 'strong_buy')),
    confidence      DOUBLE PRECISION NOT NULL,
    latency_ms      DOUBLE PRECISION NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (signal_id, model_id)
);

CREATE TABLE drift_reports (
    as_of                   DATE NOT NULL,
    model_id                TEXT NOT NULL REFERENCES ml_models (model_id),
    recommendation          TEXT NOT NULL CHECK (recommendation IN ('emergency_retrain', 'schedule_retrain', 'no_action')),
    score_psi               DOUBLE PRECISION,
    drifting_features       JSONB NOT NULL,
    ks_statistics           JSONB NOT NULL,
    rolling_accuracy        DOUBLE PRECISION,
    validation_accuracy     DOUBLE PRECISION,
    live_rows               INTEGER NOT NULL,
    reference_rows          INTEGER NOT NULL,
    resolved_outcomes       INTEGER NOT NULL,
    reason                  TEXT NOT NULL,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of, model_id)
);

CREATE TABLE trading_mode_changes (
    change_id       BIGSERIAL PRIMARY KEY,
    old_mode        TEXT NOT NULL CHECK (old_mode IN ('paper', 'live')),
    new_mode        TEXT NOT NULL CHECK (new_mode IN ('paper', 'live')),
    changed_by      TEXT NOT NULL,
    reason          TEXT,
    confirmed       BOOLEAN NOT NULL,
    env_flag_set    BOOLEAN NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Failed Dagster runs, recorded by the run-failure sensor where operators look.
CREATE TABLE pipeline_run_failures (
    run_id      TEXT PRIMARY KEY,
    job_name    TEXT NOT NULL,
    error       TEXT,
    failed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
