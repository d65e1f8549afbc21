-- Secrets Draco keeps at rest, sealed with AES-256-GCM under the master
-- key (never stored here): the key id that sealed each, its nonce, and the
-- ciphertext with its tag. See src/seal.rs.
CREATE TABLE sealed_secrets (
    name       TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    sealed_at  TEXT NOT NULL
);
