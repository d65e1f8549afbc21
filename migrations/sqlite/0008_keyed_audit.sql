-- Events hashed under the audit key (HMAC-SHA256) from now on; earlier
-- ones keep their plain SHA-256 chain. See src/audit.rs.
ALTER TABLE audit_events ADD COLUMN keyed INTEGER NOT NULL DEFAULT 0;
