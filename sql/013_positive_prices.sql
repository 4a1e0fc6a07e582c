-- The price rule (parsing.parse_prices) admits only positive prices; the table now refuses any
-- other, so the prices_are_positive check reads this constraint instead of scanning every row.
ALTER TABLE prices ADD CONSTRAINT prices_are_positive CHECK (
    close > 0 AND adj_close > 0 AND (open IS NULL OR open > 0)
    AND (high IS NULL OR high > 0) AND (low IS NULL OR low > 0));
