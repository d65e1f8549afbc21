-- Draco's state. Timestamps are RFC 3339 UTC text; money is USD as REAL.

CREATE TABLE scans (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    -- running | succeeded | partial | failed
    status      TEXT NOT NULL,
    summary     TEXT
);

CREATE TABLE cost_points (
    account_id TEXT NOT NULL,
    service    TEXT NOT NULL,
    day        TEXT NOT NULL,
    amount_usd REAL NOT NULL,
    estimated  INTEGER NOT NULL,
    PRIMARY KEY (account_id, service, day)
);

CREATE TABLE findings (
    id                 INTEGER PRIMARY KEY,
    fingerprint        TEXT NOT NULL UNIQUE,
    kind               TEXT NOT NULL,
    severity           TEXT NOT NULL,
    title              TEXT NOT NULL,
    resource           TEXT NOT NULL,
    account            TEXT NOT NULL,
    region             TEXT,
    expected           REAL,
    actual             REAL,
    impact_usd_monthly REAL,
    evidence           TEXT NOT NULL,
    -- open | awaiting_approval | approved | rejected | resolved
    status             TEXT NOT NULL,
    first_seen_at      TEXT NOT NULL,
    last_seen_at       TEXT NOT NULL,
    first_scan_id      INTEGER NOT NULL REFERENCES scans (id),
    last_scan_id       INTEGER NOT NULL REFERENCES scans (id),
    resolved_at        TEXT
);
CREATE INDEX findings_status ON findings (status);

CREATE TABLE proposals (
    finding_id   INTEGER PRIMARY KEY REFERENCES findings (id),
    advisor      TEXT NOT NULL,
    template_id  TEXT NOT NULL,
    summary      TEXT NOT NULL,
    risk         TEXT NOT NULL,
    changes      TEXT NOT NULL,
    blast_radius TEXT NOT NULL,
    format       TEXT NOT NULL,
    body         TEXT NOT NULL,
    rollback     TEXT NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE TABLE change_requests (
    id               INTEGER PRIMARY KEY,
    finding_id       INTEGER NOT NULL UNIQUE REFERENCES findings (id),
    backend          TEXT NOT NULL,
    branch           TEXT NOT NULL,
    head_commit      TEXT NOT NULL,
    location         TEXT NOT NULL,
    -- open | approved (merge pending) | merged | rejected (close pending) | closed
    state            TEXT NOT NULL,
    opened_at        TEXT NOT NULL,
    decided_by       TEXT,
    decision_channel TEXT,
    decided_at       TEXT,
    reason           TEXT,
    merge_commit     TEXT,
    completed_at     TEXT
);

-- Append-only; each row's hash covers the previous row's hash, so any edit
-- or deletion breaks the chain (`draco audit verify`).
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL UNIQUE,
    hash      TEXT NOT NULL UNIQUE
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
