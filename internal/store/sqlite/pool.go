package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/standbyhq/standby"
)

// specOf is the JSON of a pool's spec column: the whole pool less what
// has a column of its own (those are left zero and read from the columns),
// so a field added to standby.WarmPool is stored without a change here.
func specOf(p *standby.WarmPool) standby.WarmPool {
	q := *p
	q.ID, q.Name, q.State, q.ResolvedTemplateBuildID, q.Labels, q.Metadata = "", "", "", nil, nil, nil
	q.Version, q.Status, q.RolloutStatus, q.DegradedReason = 0, standby.WarmPoolStatus{}, standby.RolloutStatus{}, nil
	q.CreatedAt, q.UpdatedAt, q.LastReconciledAt = time.Time{}, time.Time{}, nil
	return q
}

// poolSelect reads a pool with its status counts computed from the
// instance and sandbox rows; ?1 is the start of the last hour.
const poolSelect = `SELECT p.id, p.project_id, p.name, p.state, p.resolved_template_build_id, p.labels, p.metadata, p.spec,
	p.version, p.created_at, p.updated_at, p.target, p.unavailable, p.rollout_status, p.degraded_reason, p.last_reconciled_at,
	(SELECT count(*) FROM instances i WHERE i.pool_id = p.id AND i.state = 'ready'),
	(SELECT count(*) FROM instances i WHERE i.pool_id = p.id AND i.state = 'warming'),
	(SELECT count(*) FROM instances i WHERE i.pool_id = p.id AND i.state = 'claimed'),
	(SELECT count(*) FROM instances i WHERE i.pool_id = p.id AND i.state = 'draining'),
	(SELECT count(*) FROM instances i WHERE i.pool_id = p.id AND i.state = 'failed' AND i.ended_at > ?1),
	(SELECT count(*) FROM sandboxes x WHERE x.pool_id = p.id AND x.state = 'expired' AND x.stopped_at > ?1)
	FROM warm_pools p`

func scanPool(r scanner) (*standby.WarmPool, error) {
	var c standby.WarmPool // the columns; the spec JSON holds the rest
	var resolved, degraded sql.NullString
	var labels, metadata, spec, rollout string
	var created, updated int64
	var reconciled sql.NullInt64
	st := &c.Status
	if err := r.Scan(&c.ID, &c.ProjectID, &c.Name, &c.State, &resolved, &labels, &metadata, &spec,
		&c.Version, &created, &updated, &st.Target, &st.Unavailable, &rollout, &degraded, &reconciled,
		&st.Ready, &st.Warming, &st.Claimed, &st.Draining, &st.Failed, &st.Expired); err != nil {
		return nil, err
	}
	var p standby.WarmPool
	if err := decodeJSON(spec, &p); err != nil {
		return nil, err
	}
	p.ID, p.ProjectID, p.Name, p.State, p.Version, p.Status = c.ID, c.ProjectID, c.Name, c.State, c.Version, c.Status
	if err := decodeJSON(rollout, &p.RolloutStatus); err != nil {
		return nil, err
	}
	if p.RolloutStatus.CurrentCounts == nil {
		p.RolloutStatus.CurrentCounts = map[string]int{}
	}
	var err error
	if p.Labels, err = decodeMap[string](labels); err != nil {
		return nil, err
	}
	p.Metadata = []byte(metadata)
	p.ResolvedTemplateBuildID, p.DegradedReason = fromNullString(resolved), fromNullString(degraded)
	p.CreatedAt, p.UpdatedAt, p.LastReconciledAt = fromMicro(created), fromMicro(updated), fromNullMicro(reconciled)
	return &p, nil
}

// hourAgo is where the last-hour counts of pool status start.
func (s *Store) hourAgo() int64 { return micro(s.clock.Now().Add(-time.Hour)) }

// CreateWarmPool stores a pool (Version 1).
func (s *Store) CreateWarmPool(ctx context.Context, p *standby.WarmPool) error {
	p.Version = 1
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return writePool(ctx, tx, p, true)
	})
}

// writePool inserts or rewrites a whole pool row (spec and controller
// columns), first giving p's unset maps their empty values, as the caller
// gets them back.
func writePool(ctx context.Context, tx *sql.Tx, p *standby.WarmPool, insert bool) error {
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if len(p.Metadata) == 0 {
		p.Metadata = []byte("{}")
	}
	if p.RolloutStatus.CurrentCounts == nil {
		p.RolloutStatus.CurrentCounts = map[string]int{}
	}
	spec, err := encodeJSON(specOf(p))
	if err != nil {
		return err
	}
	labels, err := jsonMap(p.Labels)
	if err != nil {
		return err
	}
	rollout, err := encodeJSON(p.RolloutStatus)
	if err != nil {
		return err
	}
	args := []any{p.ProjectID, p.Name, p.State, nullString(p.ResolvedTemplateBuildID), labels, metadataText(p.Metadata), spec,
		p.Version, micro(p.CreatedAt), micro(p.UpdatedAt), p.Status.Target, p.Status.Unavailable, rollout,
		nullString(p.DegradedReason), microPtr(p.LastReconciledAt), p.ID}
	q := `UPDATE warm_pools SET project_id = ?, name = ?, state = ?, resolved_template_build_id = ?, labels = ?, metadata = ?, spec = ?,
		version = ?, created_at = ?, updated_at = ?, target = ?, unavailable = ?, rollout_status = ?, degraded_reason = ?,
		last_reconciled_at = ? WHERE id = ?`
	if insert {
		q = `INSERT INTO warm_pools (project_id, name, state, resolved_template_build_id, labels, metadata, spec,
			version, created_at, updated_at, target, unavailable, rollout_status, degraded_reason, last_reconciled_at, id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	}
	_, err = tx.ExecContext(ctx, q, args...)
	return dbError(err, "write warm pool "+p.ID)
}

func (s *Store) findPool(ctx context.Context, q querier, id string) (*standby.WarmPool, error) {
	p, err := scanPool(q.QueryRowContext(ctx, poolSelect+" WHERE p.id = ?2", s.hourAgo(), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("warm pool", id)
	}
	return p, dbError(err, "find warm pool")
}

// FindWarmPool returns a pool, deleted or not, with Status counts computed
// from the records. not_found.
func (s *Store) FindWarmPool(ctx context.Context, id string) (*standby.WarmPool, error) {
	return s.findPool(ctx, s.reader, id)
}

// FindWarmPools lists pools in creation order, with Status as above.
func (s *Store) FindWarmPools(ctx context.Context, f standby.WarmPoolFilter) ([]*standby.WarmPool, string, error) {
	w := &where{args: []any{s.hourAgo()}}
	if f.ProjectID != "" {
		w.add("p.project_id = ?", f.ProjectID)
	}
	w.in("p.id", f.IDs)
	w.in("p.state", f.States)
	if !f.IncludeDeleted {
		w.add("p.state != 'deleted'")
	}
	w.labels("p.labels", f.Labels)
	return listByID(ctx, s.reader, "twp", poolSelect, "p.id", w, f.Page, scanPool, func(p *standby.WarmPool) string { return p.ID })
}

// UpdateWarmPool edits a pool; version+1. The store keeps whatever
// UpdatedAt fn leaves. not_found.
func (s *Store) UpdateWarmPool(ctx context.Context, id string, fn func(*standby.WarmPool) error) (*standby.WarmPool, error) {
	var p *standby.WarmPool
	err := s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if p, err = s.findPool(ctx, tx, id); err != nil {
			return err
		}
		version, status := p.Version, p.Status
		if err := fn(p); err != nil {
			return err
		}
		p.ID, p.Version = id, version+1
		// Counts are computed, never stored; Target and Unavailable are
		// the controller's (SetWarmPoolStatus).
		p.Status = status
		return writePool(ctx, tx, p, false)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// SetWarmPoolStatus records the controller's view; no version change.
// not_found.
func (s *Store) SetWarmPoolStatus(ctx context.Context, id string, st standby.WarmPoolControllerStatus) error {
	if st.RolloutStatus.CurrentCounts == nil {
		st.RolloutStatus.CurrentCounts = map[string]int{}
	}
	rollout, err := encodeJSON(st.RolloutStatus)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE warm_pools SET target = ?, unavailable = ?, rollout_status = ?, degraded_reason = ?, last_reconciled_at = ? WHERE id = ?",
			st.Target, st.Unavailable, rollout, nullString(st.DegradedReason), micro(st.LastReconciledAt), id)
		return affected(res, err, "warm pool", id, "set warm pool status")
	})
}

const instanceCols = `id, project_id, pool_id, state, template_build_id, host_id, address, ports, labels, annotations,
	sandbox_id, rollout_generation, reason, created_at, ready_at, ended_at`

func scanInstance(r scanner) (*standby.Instance, error) {
	var i standby.Instance
	var pool, sandbox sql.NullString
	var ports, labels, annotations string
	var created int64
	var ready, ended sql.NullInt64
	if err := r.Scan(&i.ID, &i.ProjectID, &pool, &i.State, &i.TemplateBuildID, &i.HostID, &i.Address, &ports, &labels, &annotations,
		&sandbox, &i.RolloutGeneration, &i.Reason, &created, &ready, &ended); err != nil {
		return nil, err
	}
	var err error
	if i.Ports, err = decodeMap[int](ports); err != nil {
		return nil, err
	}
	if i.Labels, err = decodeMap[string](labels); err != nil {
		return nil, err
	}
	if i.Annotations, err = decodeMap[string](annotations); err != nil {
		return nil, err
	}
	i.PoolID, i.SandboxID = pool.String, fromNullString(sandbox)
	i.CreatedAt, i.ReadyAt, i.EndedAt = fromMicro(created), fromNullMicro(ready), fromNullMicro(ended)
	return &i, nil
}

const instanceBriefCols = `id, project_id, pool_id, state, template_build_id, host_id, rollout_generation, created_at, ready_at, ended_at`

// scanInstanceBrief scans instanceBriefCols (InstanceFilter.Brief).
func scanInstanceBrief(r scanner) (*standby.Instance, error) {
	var i standby.Instance
	var pool sql.NullString
	var created int64
	var ready, ended sql.NullInt64
	if err := r.Scan(&i.ID, &i.ProjectID, &pool, &i.State, &i.TemplateBuildID, &i.HostID, &i.RolloutGeneration, &created, &ready, &ended); err != nil {
		return nil, err
	}
	i.PoolID = pool.String
	i.CreatedAt, i.ReadyAt, i.EndedAt = fromMicro(created), fromNullMicro(ready), fromNullMicro(ended)
	return &i, nil
}

func normalizeInstance(i *standby.Instance) {
	if i.Ports == nil {
		i.Ports = map[string]int{}
	}
	if i.Labels == nil {
		i.Labels = map[string]string{}
	}
	if i.Annotations == nil {
		i.Annotations = map[string]string{}
	}
}

// writeInstance inserts or rewrites a whole instance row.
func writeInstance(ctx context.Context, tx *sql.Tx, i *standby.Instance, insert bool) error {
	normalizeInstance(i)
	ports, err := jsonMap(i.Ports)
	if err != nil {
		return err
	}
	labels, err := jsonMap(i.Labels)
	if err != nil {
		return err
	}
	annotations, err := jsonMap(i.Annotations)
	if err != nil {
		return err
	}
	args := []any{i.ProjectID, emptyNull(i.PoolID), i.State, i.TemplateBuildID, i.HostID, i.Address, ports, labels, annotations,
		nullString(i.SandboxID), i.RolloutGeneration, i.Reason, micro(i.CreatedAt), microPtr(i.ReadyAt), microPtr(i.EndedAt), i.ID}
	q := `UPDATE instances SET project_id = ?, pool_id = ?, state = ?, template_build_id = ?, host_id = ?, address = ?, ports = ?,
		labels = ?, annotations = ?, sandbox_id = ?, rollout_generation = ?, reason = ?, created_at = ?, ready_at = ?, ended_at = ?
		WHERE id = ?`
	if insert {
		q = `INSERT INTO instances (project_id, pool_id, state, template_build_id, host_id, address, ports, labels, annotations,
			sandbox_id, rollout_generation, reason, created_at, ready_at, ended_at, id)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	}
	_, err = tx.ExecContext(ctx, q, args...)
	return dbError(err, "write instance "+i.ID)
}

// CreateInstance stores an instance. conflict: id taken.
func (s *Store) CreateInstance(ctx context.Context, i *standby.Instance) error {
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error { return writeInstance(ctx, tx, i, true) })
}

func findInstance(ctx context.Context, q querier, id string) (*standby.Instance, error) {
	i, err := scanInstance(q.QueryRowContext(ctx, "SELECT "+instanceCols+" FROM instances WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("instance", id)
	}
	return i, dbError(err, "find instance")
}

// FindInstance returns an instance. not_found.
func (s *Store) FindInstance(ctx context.Context, id string) (*standby.Instance, error) {
	return findInstance(ctx, s.reader, id)
}

// FindInstances lists instances in creation order.
func (s *Store) FindInstances(ctx context.Context, f standby.InstanceFilter) ([]*standby.Instance, string, error) {
	cols, scan := instanceCols, scanInstance
	if f.Brief {
		cols, scan = instanceBriefCols, scanInstanceBrief
	}
	return listByID(ctx, s.reader, "inst", "SELECT "+cols+" FROM instances", "id", instanceWhere(f), f.Page, scan, func(i *standby.Instance) string { return i.ID })
}

// instanceWhere is the condition of an instance filter.
func instanceWhere(f standby.InstanceFilter) *where {
	w := &where{}
	if f.ProjectID != "" {
		w.add("project_id = ?", f.ProjectID)
	}
	if f.PoolID != "" {
		w.add("pool_id = ?", f.PoolID)
	}
	if f.NoPool {
		w.add("pool_id IS NULL")
	}
	if f.HostID != "" {
		w.add("host_id = ?", f.HostID)
	}
	w.in("state", f.States)
	return w
}

// CountInstances counts the instances matching f. By host and state it
// reads only the instances_host_state index.
func (s *Store) CountInstances(ctx context.Context, f standby.InstanceFilter) (int, error) {
	w := instanceWhere(f)
	var n int
	err := s.reader.QueryRowContext(ctx, "SELECT count(*) FROM instances"+w.String(), w.args...).Scan(&n)
	return n, dbError(err, "count instances")
}

// UpdateInstance edits an instance. not_found.
func (s *Store) UpdateInstance(ctx context.Context, id string, fn func(*standby.Instance) error) (*standby.Instance, error) {
	var i *standby.Instance
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if i, err = findInstance(ctx, tx, id); err != nil {
			return err
		}
		if err := fn(i); err != nil {
			return err
		}
		i.ID = id
		return writeInstance(ctx, tx, i, false)
	})
	if err != nil {
		return nil, err
	}
	return i, nil
}

// DeleteInstance removes an instance record. not_found.
func (s *Store) DeleteInstance(ctx context.Context, id string) error {
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM instances WHERE id = ?", id)
		return affected(res, err, "instance", id, "delete instance")
	})
}

// DeleteFailedInstances removes failed instances that ended before t and
// returns how many.
func (s *Store) DeleteFailedInstances(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM instances WHERE state = 'failed' AND ended_at < ?", micro(before))
		if err != nil {
			return dbError(err, "delete failed instances")
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
