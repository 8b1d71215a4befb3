-- +goose Up
-- A checkout moves an instance from ready to claimed. With the state in
-- the pool index, that was an index delete and an insert (and their
-- pages in the commit); a partial index of the ready rows only makes it
-- one delete, and the pool's other lookups need only the pool id.
CREATE INDEX instances_ready ON instances (pool_id, ready_at, id) WHERE state = 'ready';
CREATE INDEX instances_pool_id ON instances (pool_id);
DROP INDEX instances_pool;

-- +goose Down
CREATE INDEX instances_pool ON instances (pool_id, state, ready_at, id);
DROP INDEX instances_pool_id;
DROP INDEX instances_ready;
