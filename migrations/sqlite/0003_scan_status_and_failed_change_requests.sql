-- A change request whose decision could not be carried out (the branch was
-- changed outside Draco, the repository was gone, the merge failed) is
-- `failed`, with why; it is re-proposed by the next scan or decided again.
ALTER TABLE change_requests ADD COLUMN failure TEXT;

-- The scan status names are `ok`, `partial`, `failed`, `interrupted`.
UPDATE scans SET status = 'ok' WHERE status = 'succeeded';
