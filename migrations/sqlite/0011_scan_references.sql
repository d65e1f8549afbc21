-- Retention deletes scans no finding refers to: these make that check (and
-- the foreign-key checks of deleting a scan) an index lookup instead of a
-- scan of every finding per scan.
CREATE INDEX findings_first_scan ON findings (first_scan_id);
CREATE INDEX findings_last_scan ON findings (last_scan_id);
