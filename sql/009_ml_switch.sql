-- The ML kill switch (the seeds' `enabled` flag): every switch, who/when/why/old/new, dated like a
-- deployment. The switch in force on D is the latest change effective on or before D (none: enabled),
-- so a re-run of a past day serves as that day was served. While disabled the signals are the
-- heuristic's alone, on serving path 'ml_disabled'.
CREATE TABLE ml_switch_changes (
    change_id       BIGSERIAL PRIMARY KEY,
    effective_from  DATE NOT NULL,
    old_enabled     BOOLEAN NOT NULL,
    new_enabled     BOOLEAN NOT NULL CHECK (new_enabled <> old_enabled),
    changed_by      TEXT NOT NULL,
    reason          TEXT NOT NULL CHECK (btrim(reason) <> ''),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ml_switch_changes_effective_idx ON ml_switch_changes (effective_from, change_id);

ALTER TABLE trading_signals DROP CONSTRAINT trading_signals_serving_path_check;
ALTER TABLE trading_signals ADD CONSTRAINT trading_signals_serving_path_check CHECK (serving_path IN (
    'no_champion', 'champion', 'previous_champion', 'heuristic_fallback', 'heuristic_arm', 'ml_disabled'));
ALTER TABLE ml_predictions DROP CONSTRAINT ml_predictions_serving_path_check;
ALTER TABLE ml_predictions ADD CONSTRAINT ml_predictions_serving_path_check CHECK (serving_path IN (
    'no_champion', 'champion', 'previous_champion', 'heuristic_fallback', 'heuristic_arm', 'ml_disabled'));
