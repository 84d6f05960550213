-- The pipeline's tables: what came in, what goes out, and where our messages went.

CREATE TABLE inbox (
    id          BIGSERIAL PRIMARY KEY,
    dedupe_key  TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending',
    attempts    BIGINT  NOT NULL DEFAULT 0,
    not_before  BIGINT  NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until BIGINT,
    error       TEXT,
    outcome     TEXT,
    handled_at  BIGINT
);
CREATE INDEX inbox_by_state ON inbox (state, id);

CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    ordering_key TEXT    NOT NULL,
    method       TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    ref_key      TEXT,
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     BIGINT  NOT NULL DEFAULT 0,
    not_before   BIGINT  NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  BIGINT,
    error        TEXT,
    response     TEXT,
    created_at   BIGINT  NOT NULL,
    sent_at      BIGINT
);
CREATE INDEX outbox_by_key ON outbox (state, ordering_key, id);

CREATE TABLE message_refs (
    ref_key TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    ts      TEXT NOT NULL
);
