-- +goose Up
-- The controller counts a host's live instances on every look at a pool;
-- with the state in the index that count never reads the table.
CREATE INDEX instances_host_state ON instances (host_id, state);
DROP INDEX instances_host;

-- +goose Down
CREATE INDEX instances_host ON instances (host_id);
DROP INDEX instances_host_state;
