-- Where each flow's source feed was read up to; advanced in the same transaction that queues
-- the records read.
CREATE TABLE cursors (
    flow       TEXT    PRIMARY KEY,
    cursor     TEXT,
    updated_at BIGINT  NOT NULL
);

-- Source changes waiting for, or done with, delivery. Dead rows are the dead-letter list.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    flow            TEXT    NOT NULL,
    source_id       TEXT    NOT NULL,
    event_id        TEXT,
    record          TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'dead')),
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    claimed_by      TEXT,
    claimed_until   BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_record ON outbox (flow, source_id, status);
-- A source event (webhook id, Moloni eventId) is queued once, however often it arrives.
CREATE UNIQUE INDEX outbox_event ON outbox (flow, event_id) WHERE event_id IS NOT NULL;

-- Which target record each source record became, and a hash of what was last written to it.
CREATE TABLE links (
    source      TEXT    NOT NULL,
    source_id   TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    target_id   TEXT    NOT NULL,
    written_hash TEXT,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (source, source_id, target)
);
CREATE INDEX links_target ON links (target, target_id, source);

-- Named leases: one poller per flow across hosts sharing a database.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL
);
