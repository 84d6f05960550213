-- The first reply of an app's sync route to a request with an `Idempotency-Key`, committed with
-- the change it answers, so a repeat gets the same reply and changes nothing. `key` and
-- `fingerprint` are hashes the engine makes (of the app, the caller's credentials and the key;
-- of the request); the store knows neither. Pruned by age.
CREATE TABLE sync_replies (
    key         TEXT   PRIMARY KEY,
    fingerprint TEXT   NOT NULL,
    status      BIGINT NOT NULL,
    body        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX sync_replies_by_time ON sync_replies (created_at);
