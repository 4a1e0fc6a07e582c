-- Shadow outcomes cover every heuristic candidate of a day, generated as a signal or not, so the
-- model's calls and the heuristic's can be compared on the same pool (generated signals are
-- already filtered by the blend, so on them the two never disagree in direction).
ALTER TABLE shadow_outcomes DROP CONSTRAINT shadow_outcomes_signal_id_fkey;
ALTER TABLE shadow_outcomes ADD COLUMN generated BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE shadow_outcomes ADD COLUMN model_id TEXT REFERENCES ml_models (model_id);

-- The serving model's call on every heuristic candidate (written when the day's signals are built).
ALTER TABLE heuristic_signals ADD COLUMN ml_signal_type TEXT
    CHECK (ml_signal_type IN ('strong_sell', 'sell', 'hold', 'buy', 'strong_buy'));
ALTER TABLE heuristic_signals ADD COLUMN model_id TEXT REFERENCES ml_models (model_id);
