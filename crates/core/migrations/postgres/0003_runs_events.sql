-- What was last written to a linked target record (the mapped input, as JSON), so our own write
-- coming back (by webhook or poll) is recognised as an echo; and when the source record we wrote
-- from last changed, for newest-wins conflicts.
ALTER TABLE links ADD COLUMN written TEXT;
ALTER TABLE links ADD COLUMN source_updated_at TEXT;

-- Each flow's last run of its trigger and its last error, for `tether status`.
CREATE TABLE flow_runs (
    flow          TEXT    PRIMARY KEY,
    last_run_at   BIGINT  NOT NULL,
    last_ok_at    BIGINT,
    last_error    TEXT,
    last_error_at BIGINT
);

-- What delivery did, record by record: writes, skips, dead letters, and the fields a target
-- silently dropped (write-verification warnings). The dashboard's activity and record views.
CREATE TABLE events (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT  NOT NULL,
    flow       TEXT    NOT NULL,
    source_id  TEXT    NOT NULL,
    target_id  TEXT,
    kind       TEXT    NOT NULL,
    detail     TEXT
);
CREATE INDEX events_flow ON events (flow, id);
CREATE INDEX events_record ON events (source_id);

-- Every webhook received, whatever became of it.
CREATE TABLE webhook_log (
    id          BIGSERIAL PRIMARY KEY,
    received_at BIGINT  NOT NULL,
    connector   TEXT    NOT NULL,
    event_types TEXT    NOT NULL,
    verdict     TEXT    NOT NULL,
    status      BIGINT  NOT NULL,
    queued      BIGINT  NOT NULL,
    detail      TEXT
);
