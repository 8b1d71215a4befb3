-- Times are INTEGER microseconds since the Unix epoch (UTC), so they sort
-- and compare as numbers and round-trip exactly. Nested values are JSON
-- text; the columns lists filter, order or count by are real columns with
-- indexes.

-- +goose Up
CREATE TABLE projects (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    quotas     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    hash       TEXT NOT NULL,
    prefix     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX api_keys_project ON api_keys (project_id, id);
CREATE INDEX api_keys_hash ON api_keys (hash);

CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    labels      TEXT NOT NULL,
    builtin     INTEGER NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (project_id, name)
) STRICT;
CREATE INDEX templates_project ON templates (project_id, id);

-- builds.spec holds every field of the build but id, project, template,
-- number and created_at: builds are immutable and read whole.
CREATE TABLE builds (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL,
    template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    template    TEXT NOT NULL,
    number      INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (template_id, number)
) STRICT;

CREATE TABLE tags (
    template_id TEXT NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    tag         TEXT NOT NULL,
    build_id    TEXT NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    PRIMARY KEY (template_id, tag)
) STRICT;
CREATE INDEX tags_build ON tags (build_id);

-- warm_pools.spec holds the user-settable and resolution fields; the
-- controller's columns (target .. last_reconciled_at) are written by
-- SetWarmPoolStatus alone so a status write never touches the spec.
CREATE TABLE warm_pools (
    id                         TEXT PRIMARY KEY,
    project_id                 TEXT NOT NULL,
    name                       TEXT NOT NULL,
    state                      TEXT NOT NULL,
    resolved_template_build_id TEXT,
    labels                     TEXT NOT NULL,
    metadata                   TEXT NOT NULL,
    spec                       TEXT NOT NULL,
    version                    INTEGER NOT NULL,
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL,
    target                     INTEGER NOT NULL DEFAULT 0,
    unavailable                INTEGER NOT NULL DEFAULT 0,
    rollout_status             TEXT NOT NULL DEFAULT '{}',
    degraded_reason            TEXT,
    last_reconciled_at         INTEGER
) STRICT;
CREATE INDEX warm_pools_project ON warm_pools (project_id, id);
CREATE INDEX warm_pools_build ON warm_pools (resolved_template_build_id);

CREATE TABLE instances (
    id                 TEXT PRIMARY KEY,
    project_id         TEXT NOT NULL,
    pool_id            TEXT,
    state              TEXT NOT NULL,
    template_build_id  TEXT NOT NULL,
    host_id            TEXT NOT NULL,
    address            TEXT NOT NULL,
    ports              TEXT NOT NULL,
    labels             TEXT NOT NULL,
    annotations        TEXT NOT NULL,
    sandbox_id         TEXT,
    rollout_generation INTEGER NOT NULL,
    reason             TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    ready_at           INTEGER,
    ended_at           INTEGER
) STRICT;
-- Checkout walks (pool_id, state='ready') in ready_at, id order.
CREATE INDEX instances_pool ON instances (pool_id, state, ready_at, id);
CREATE INDEX instances_state ON instances (state, ended_at);
CREATE INDEX instances_host ON instances (host_id);
CREATE INDEX instances_project ON instances (project_id, id);

CREATE TABLE sandboxes (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL,
    template          TEXT NOT NULL,
    template_build_id TEXT NOT NULL,
    config            TEXT NOT NULL,
    state             TEXT NOT NULL,
    address           TEXT NOT NULL,
    ports             TEXT NOT NULL,
    host_id           TEXT NOT NULL,
    instance_id       TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    timeout_ms        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    stopped_at        INTEGER,
    error             TEXT,
    metadata          TEXT NOT NULL,
    labels            TEXT NOT NULL,
    annotations       TEXT NOT NULL,
    checkout          TEXT NOT NULL,
    pool_id           TEXT,
    version           INTEGER NOT NULL
) STRICT;
CREATE INDEX sandboxes_project ON sandboxes (project_id, id);
CREATE INDEX sandboxes_pool ON sandboxes (pool_id, state, stopped_at);
CREATE INDEX sandboxes_expiry ON sandboxes (state, expires_at);
CREATE INDEX sandboxes_build ON sandboxes (template_build_id, state);

CREATE TABLE hosts (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    state             TEXT NOT NULL,
    host_pool_id      TEXT NOT NULL,
    cell_id           TEXT NOT NULL,
    address           TEXT NOT NULL,
    isolation         TEXT NOT NULL,
    capacity          TEXT NOT NULL,
    max_instances     INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL,
    created_at        INTEGER NOT NULL
) STRICT;

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    body         BLOB,
    headers      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE hosts;
DROP TABLE sandboxes;
DROP TABLE instances;
DROP TABLE warm_pools;
DROP TABLE tags;
DROP TABLE builds;
DROP TABLE templates;
DROP TABLE api_keys;
DROP TABLE projects;
