-- Approvals over several channels (issue 13). A change request is the rows
-- of `change_requests` on one (backend, branch, head_commit); everything
-- below is bound to that exact head commit.

-- Every vote: an approval counts toward the quorum, a rejection decides.
-- `state`: counted | withdrawn (a dismissed review) | superseded (a new
-- commit on the branch).
CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    backend     TEXT NOT NULL,
    branch      TEXT NOT NULL,
    head_commit TEXT NOT NULL,
    approver    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    -- approve | reject
    verdict     TEXT NOT NULL,
    at          TEXT NOT NULL,
    state       TEXT NOT NULL,
    -- The message that carried it, redacted (an SMS body, a review's text).
    message     TEXT
);
CREATE INDEX approvals_change_request ON approvals (backend, branch, head_commit);

-- Each approver asked on a channel about one change request at one head:
-- the SMS code or the mail's two link tokens, each stored only as a keyed
-- digest (HMAC-SHA256 under the data dir's approval key).
-- `state`: pending | used | superseded | expired | revoked.
-- `delivery`: queued | sent | failed | held (the daily cap).
CREATE TABLE approval_asks (
    id             INTEGER PRIMARY KEY,
    backend        TEXT NOT NULL,
    branch         TEXT NOT NULL,
    head_commit    TEXT NOT NULL,
    approver       TEXT NOT NULL,
    channel        TEXT NOT NULL,
    code_digest    TEXT UNIQUE,
    approve_digest TEXT UNIQUE,
    reject_digest  TEXT UNIQUE,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    state          TEXT NOT NULL,
    used_at        TEXT,
    -- When the half-time reminder (with a fresh code or links) went out.
    reminded_at    TEXT,
    delivery       TEXT NOT NULL,
    sent_at        TEXT,
    provider_id    TEXT,
    error          TEXT,
    UNIQUE (backend, branch, head_commit, approver, channel)
);
CREATE INDEX approval_asks_approver ON approval_asks (approver, state);

-- Wrong codes, for the per-approver lockout.
CREATE TABLE approval_failures (
    id       INTEGER PRIMARY KEY,
    approver TEXT NOT NULL,
    channel  TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX approval_failures_approver ON approval_failures (approver, at);

-- Numbers that replied STOP: nothing is sent to them until START.
CREATE TABLE sms_opt_outs (
    phone TEXT PRIMARY KEY,
    at    TEXT NOT NULL
);

-- When a scan after the merge checked whether the finding was resolved
-- (and said so on the pull request).
ALTER TABLE change_requests ADD COLUMN verified_at TEXT;

-- When the change request's head was last set (opened, re-proposed,
-- updated): a `/draco approve` comment written before it was about an
-- older commit.
ALTER TABLE change_requests ADD COLUMN head_at TEXT;

-- GitHub reviews dismissed, by review id: a `submitted` delivery that
-- arrives after its own dismissal must not count.
CREATE TABLE dismissed_reviews (
    review_id INTEGER PRIMARY KEY,
    at        TEXT NOT NULL
);

-- Inbound SMS already handled, by Twilio's MessageSid (a SHA-256 of it):
-- a captured signed request replayed later is answered neutrally instead
-- of being counted again (as a wrong code toward a lockout, say).
CREATE TABLE sms_seen (
    message_sid TEXT PRIMARY KEY,
    at          TEXT NOT NULL
);
