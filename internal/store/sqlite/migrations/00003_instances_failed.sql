-- +goose Up
-- Only the sweep of old failed instances looks instances up by state
-- alone. Indexing failed rows only spares every checkout and every ready
-- instance an index page write (and its share of the WAL fsync).
CREATE INDEX instances_failed ON instances (ended_at) WHERE state = 'failed';
DROP INDEX instances_state;

-- +goose Down
CREATE INDEX instances_state ON instances (state, ended_at);
DROP INDEX instances_failed;
