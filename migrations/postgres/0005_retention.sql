-- Retention and purge (issue 14), as SQLite's 0010. Migration 0004 is left
-- to the lease and outbox work; sqlx applies migrations by version and
-- accepts the gap.
--
-- Audit events written from now on (v3, see src/audit.rs) keep a keyed
-- digest of their payload (actor and details), and their chain hash covers
-- the digest instead of the payload. Their payload can then be replaced by
-- a tombstone (actor 'purged', details {"purged":"<purged_at>"}) and the
-- chain still verifies. Earlier events have no digest and keep their payload.
ALTER TABLE audit_events ADD COLUMN payload_digest TEXT COLLATE "C";
ALTER TABLE audit_events ADD COLUMN purged_at TEXT COLLATE "C";

-- Still append-only (updates, deletes and TRUNCATE refused), with one
-- exception: the tombstone. Exactly the payload columns change, to the
-- tombstone's fixed text, once, on an event that has a digest.
CREATE FUNCTION audit_events_tombstone_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.purged_at IS NULL
       AND OLD.payload_digest IS NOT NULL
       AND NEW.purged_at IS NOT NULL
       AND NEW.actor = 'purged'
       AND NEW.details = '{"purged":"' || NEW.purged_at || '"}'
       AND NEW.seq = OLD.seq
       AND NEW.at = OLD.at
       AND NEW.action = OLD.action
       AND NEW.subject = OLD.subject
       AND NEW.prev_hash = OLD.prev_hash
       AND NEW.hash = OLD.hash
       AND NEW.keyed = OLD.keyed
       AND NEW.payload_digest = OLD.payload_digest
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (only a v3 event''s payload may be tombstoned, once)';
END;
$$;
DROP TRIGGER audit_events_no_update ON audit_events;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_tombstone_only();

-- Retention reads these by age.
CREATE INDEX findings_resolved ON findings (status, resolved_at);
CREATE INDEX scans_started ON scans (started_at);
CREATE INDEX audit_events_at ON audit_events (at);
