-- Replicas: one holder per scheduled job (scan, approvals follow-up,
-- retention), renewed while it works; another replica takes an expired
-- lease over. See src/store/leases.rs.
CREATE TABLE leases (
    job         TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    -- The holder this one took the lease from when it had expired (its
    -- holder died or stalled), NULL when it was free.
    taken_from  TEXT
);

-- A webhook delivery is processed by one replica: the one that claimed it
-- until `claimed_until` (another takes it after that).
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until TEXT;

-- approval_asks.delivery gains `sending`: claimed by one replica to send;
-- an ask left so was cut short mid-send and is never sent again (whether
-- the message left is unknown, and a duplicate is worse than a reminder).
