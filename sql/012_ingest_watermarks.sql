-- How far each ticker's prices have been ingested from one source content: every row the source
-- (identified by its fingerprint, e.g. the sha256 of the price file) holds for the ticker dated on
-- or before written_through is in prices. A daily ingest of an unchanged source then parses and
-- writes only the rows after each ticker's watermark; a changed source is ingested whole again.
CREATE TABLE ingest_watermarks (
    table_name          TEXT NOT NULL,
    ticker              TEXT NOT NULL,
    source_fingerprint  TEXT NOT NULL,
    written_through     DATE NOT NULL,
    last_price_date     DATE,                  -- the ticker's latest row written (NULL: none yet)
    PRIMARY KEY (table_name, ticker)
);

-- The parts (ingest_fingerprints) a check has verified, with the fingerprint each had then: while a
-- part's fingerprint is unchanged its rows are too, so the check need not read them again.
CREATE TABLE verified_parts (
    check_name   TEXT NOT NULL,
    table_name   TEXT NOT NULL,
    part         TEXT NOT NULL,
    fingerprint  BIGINT NOT NULL,
    row_count    INTEGER NOT NULL,
    PRIMARY KEY (check_name, table_name, part)
);

-- A write to prices that upsert_changed_parts did not make forgets the table's watermarks too.
CREATE OR REPLACE FUNCTION forget_ingest_fingerprints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('feedback_loop.fingerprinted_write', true), '') <> 'on' THEN
        EXECUTE 'DELETE FROM ' || quote_ident(TG_TABLE_SCHEMA) || '.ingest_fingerprints WHERE table_name = $1'
            USING TG_TABLE_NAME;
        EXECUTE 'DELETE FROM ' || quote_ident(TG_TABLE_SCHEMA) || '.ingest_watermarks WHERE table_name = $1'
            USING TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;
