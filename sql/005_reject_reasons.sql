-- Reject reasons are the vocabulary of vocab.RejectReason; quarantined price rows get their own table
-- (rows of a price file with no adj_close, a non-positive or non-finite price, ... never reach prices).
ALTER TABLE disclosure_rejects ADD CONSTRAINT disclosure_rejects_reason_check CHECK (reason IN (
    'paper filing without transaction detail', 'unknown transaction type', 'unparseable transaction date',
    'implausible transaction date', 'transaction date after the disclosure date', 'unparseable disclosure date',
    'disclosure date out of range', 'truncated amount band', 'unparseable amount', 'missing filer name',
    'control character in a field', 'invalid unicode in a field', 'over-long field'));

CREATE TABLE price_rejects (
    reject_id       BIGSERIAL PRIMARY KEY,
    row_hash        TEXT NOT NULL UNIQUE,           -- sha256 of the raw row: re-ingest never duplicates
    raw_row         JSONB NOT NULL,
    reason          TEXT NOT NULL CHECK (reason IN (
        'missing ticker', 'unparseable or out-of-range price date', 'missing close or adj_close',
        'non-positive or non-finite price', 'negative or non-finite volume', 'control character in a field',
        'invalid unicode in a field', 'over-long field')),
    rejected_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
