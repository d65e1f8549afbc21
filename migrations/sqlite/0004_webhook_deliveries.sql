-- Webhook deliveries (GitHub, and later Twilio and SendGrid), stored before
-- the provider gets its 2xx answer and processed from here, so a crash
-- after answering loses nothing and a redelivery changes nothing.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,
    -- The provider's own id of the delivery (GitHub: X-GitHub-Delivery).
    delivery_id TEXT NOT NULL,
    event TEXT NOT NULL,
    received_at TEXT NOT NULL,
    -- The raw body as received and verified (it may hold personal data:
    -- kept only as long as retention allows).
    body BLOB NOT NULL,
    processed_at TEXT,
    -- What processing concluded, for `draco` and the audit (no body text).
    outcome TEXT,
    UNIQUE (provider, delivery_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (processed_at, id);
