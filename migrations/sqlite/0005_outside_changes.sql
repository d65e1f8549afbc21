-- What happened to a change request outside Draco, seen through a GitHub
-- webhook or the reconciliation pass: `pushed` (someone pushed to the
-- branch), `merged` (merged without Draco), `closed` (closed by hand), or
-- NULL. Cleared when Draco re-proposes the change.
ALTER TABLE change_requests ADD COLUMN outside_change TEXT;
