-- Apps' own schema changes, applied by the engine at server start: which (app, version) ran.
-- The store knows nothing of the apps; it only records which of their migrations are done.

CREATE TABLE app_migrations (
    app        TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    applied_at BIGINT  NOT NULL,
    PRIMARY KEY (app, version)
);
