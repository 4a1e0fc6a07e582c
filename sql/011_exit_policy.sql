-- The named exit policy (lib/policy.EXIT_RULES) and one holding horizon. hold_days is in trading
-- days counting the entry day: the exit timeout, the training label's horizon and the shadow
-- outcomes' horizon at once. It replaces max_hold_days (calendar days) and shadow_horizon_days,
-- and takes the shadow horizon's value (the one already in trading days). The default policy
-- is 'timeout': a configuration that ran on the former rules (timeout, trailing stop and ATR stop
-- together) now exits at the timeout only unless an operator sets another policy.
ALTER TABLE reference_portfolio_config RENAME COLUMN shadow_horizon_days TO hold_days;
ALTER TABLE reference_portfolio_config DROP COLUMN max_hold_days;
ALTER TABLE reference_portfolio_config
    ADD CONSTRAINT reference_portfolio_config_hold_days_check CHECK (hold_days BETWEEN 1 AND 120),
    ADD COLUMN exit_policy TEXT NOT NULL DEFAULT 'timeout'
        CHECK (exit_policy IN ('timeout', 'trailing_stop', 'atr_stop', 'none'));
