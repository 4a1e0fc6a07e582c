-- Content fingerprints of the parts of the ingest tables (prices per ticker and month, disclosures
-- per filing date) as `db.upsert_changed_parts` last wrote them: a daily ingest of a whole source
-- dump writes only the parts whose fingerprint changed.
CREATE TABLE ingest_fingerprints (
    table_name      TEXT NOT NULL,
    part            TEXT NOT NULL,             -- e.g. 'AAPL|202403' (prices), '20240301' (disclosures)
    fingerprint     BIGINT NOT NULL,           -- wrapping sum of the part's 64-bit row hashes
    row_count       INTEGER NOT NULL,
    PRIMARY KEY (table_name, part)
);

-- Any write to a fingerprinted table that upsert_changed_parts did not make (DELETE, TRUNCATE,
-- UPDATE, INSERT, COPY) forgets all of the table's fingerprints: the next ingest rewrites every
-- part instead of trusting a fingerprint of rows that may no longer be there.
CREATE FUNCTION forget_ingest_fingerprints() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('feedback_loop.fingerprinted_write', true), '') <> 'on' THEN
        EXECUTE 'DELETE FROM ' || quote_ident(TG_TABLE_SCHEMA) || '.ingest_fingerprints WHERE table_name = $1'
            USING TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER prices_forget_ingest_fingerprints
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION forget_ingest_fingerprints();
CREATE TRIGGER disclosures_forget_ingest_fingerprints
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON disclosures
    FOR EACH STATEMENT EXECUTE FUNCTION forget_ingest_fingerprints();
