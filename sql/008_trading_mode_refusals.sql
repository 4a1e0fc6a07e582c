-- A refused switch to live trading is audited too: `outcome` says whether the change was applied.
ALTER TABLE trading_mode_changes
    ADD COLUMN outcome TEXT NOT NULL DEFAULT 'applied' CHECK (outcome IN ('applied', 'refused'));
