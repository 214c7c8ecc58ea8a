-- Alert incidents: one row per incident, recorded once the receiver accepted its message.
-- An open incident (resolved_at NULL) is never sent again, across checks and restarts; its key
-- is open at most once at a time.
CREATE TABLE alerts (
    id          BIGSERIAL PRIMARY KEY,
    key         TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    opened_at   BIGINT  NOT NULL,
    resolved_at BIGINT
);
CREATE UNIQUE INDEX alerts_open ON alerts (key) WHERE resolved_at IS NULL;
