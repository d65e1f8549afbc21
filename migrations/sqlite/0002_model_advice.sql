-- How each proposal came about: model, usage, cost, fallback reason (JSON).
ALTER TABLE proposals ADD COLUMN advice TEXT;

-- Model answers as they came back (still redacted: placeholders, no real
-- values), reused for an unchanged finding under the same prompt and model.
CREATE TABLE advice_cache (
    cache_key      TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    recommendation TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (cache_key, fingerprint)
);

-- Daily model usage per provider, for the request and token budgets.
CREATE TABLE llm_usage (
    provider      TEXT NOT NULL,
    day           TEXT NOT NULL,
    requests      INTEGER NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    PRIMARY KEY (provider, day)
);
