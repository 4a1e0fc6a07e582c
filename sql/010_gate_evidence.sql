-- The promotion gate's evidence (lib/models/promotion.py): the paired test on the holdout rows,
-- the 95 percent intervals of the per-row gains (challenger minus champion; log-loss gain = champion's
-- loss minus the challenger's), the test's p-value, and the mean forward excess return (in percent points)
-- of the rows each model would queue. NULL for a first model, which is compared with nothing.
ALTER TABLE ml_model_comparisons
    ADD COLUMN gate_test                TEXT,
    ADD COLUMN accuracy_gain_ci_low     DOUBLE PRECISION,
    ADD COLUMN accuracy_gain_ci_high    DOUBLE PRECISION,
    ADD COLUMN log_loss_gain            DOUBLE PRECISION,
    ADD COLUMN log_loss_gain_ci_low     DOUBLE PRECISION,
    ADD COLUMN log_loss_gain_ci_high    DOUBLE PRECISION,
    ADD COLUMN p_value                  DOUBLE PRECISION CHECK (p_value BETWEEN 0 AND 1),
    ADD COLUMN new_queue_excess_pct     DOUBLE PRECISION,
    ADD COLUMN current_queue_excess_pct DOUBLE PRECISION;
