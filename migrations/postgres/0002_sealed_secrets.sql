-- Secrets Draco keeps at rest, sealed with AES-256-GCM under the master
-- key (never stored here): the key id that sealed each, its nonce, and the
-- ciphertext with its tag. See src/seal.rs.
CREATE TABLE sealed_secrets (
    name       TEXT COLLATE "C" PRIMARY KEY,
    key_id     TEXT COLLATE "C" NOT NULL,
    nonce      BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL,
    sealed_at  TEXT COLLATE "C" NOT NULL
);
