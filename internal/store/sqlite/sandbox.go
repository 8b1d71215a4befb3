package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/standbyhq/standby"
)

// checkoutStmts are the statements of the checkout hot path, prepared once
// on the write connection.
type checkoutStmts struct {
	// claimFirst* claim the one candidate ready longest (no selectors)
	// and return it, in one statement; all* return every candidate in
	// that order with its and its pool's labels. *One take a single pool
	// id, *Many a JSON array of pool ids.
	claimFirstOne, claimFirstMany, allOne, allMany *sql.Stmt
	claim, unclaim, insertSandbox                  *sql.Stmt
}

func (c *checkoutStmts) close() {
	for _, st := range []*sql.Stmt{c.claimFirstOne, c.claimFirstMany, c.allOne, c.allMany, c.claim, c.unclaim, c.insertSandbox} {
		if st != nil {
			st.Close()
		}
	}
}

// candidateSQL selects the ready instances of enabled pools of a project,
// ready longest first. ?1 pools, ?2 project, ?3 build id or "". It walks
// instances_ready, the partial index of ready rows, by name: without
// statistics the planner would rather read every instance of the project
// for a list of pools (TestCheckoutQueryPlans).
func candidateSQL(pools string, labels bool, limit string) string {
	cols := "i.id, i.pool_id, i.template_build_id, i.host_id, i.address, i.ports"
	if labels {
		cols += ", i.labels, p.labels"
	}
	return "SELECT " + cols + ` FROM instances i INDEXED BY instances_ready JOIN warm_pools p ON p.id = i.pool_id
		WHERE ` + pools + ` AND i.state = 'ready' AND p.state = 'enabled' AND i.project_id = ?2
		AND (?3 = '' OR i.template_build_id = ?3)
		ORDER BY i.ready_at, i.id` + limit
}

// claimFirstSQL claims the candidate ready longest and returns it: one
// statement instead of a select and an update, which is most of what a
// checkout without selectors costs the writer. ?4 is the sandbox id. It
// runs inside the writer's transaction like the pair it replaces, so no
// other write comes between the pick and the claim.
func claimFirstSQL(pools string) string {
	return `UPDATE instances SET state = 'claimed', sandbox_id = ?4
		WHERE id = (SELECT i.id FROM instances i INDEXED BY instances_ready JOIN warm_pools p ON p.id = i.pool_id
			WHERE ` + pools + ` AND i.state = 'ready' AND p.state = 'enabled' AND i.project_id = ?2
			AND (?3 = '' OR i.template_build_id = ?3)
			ORDER BY i.ready_at, i.id LIMIT 1)
		AND state = 'ready'
		RETURNING id, pool_id, template_build_id, host_id, address, ports`
}

const sandboxCols = `id, project_id, template, template_build_id, config, state, address, ports, host_id, instance_id,
	created_at, started_at, timeout_ms, expires_at, stopped_at, error, metadata, labels, annotations, checkout, pool_id, version`

const sandboxInsert = "INSERT INTO sandboxes (" + sandboxCols + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

func (s *Store) prepare(ctx context.Context) error {
	const one, many = "i.pool_id = ?1", "i.pool_id IN (SELECT value FROM json_each(?1))"
	c := &s.stmts
	for _, p := range []struct {
		dst *(*sql.Stmt)
		q   string
	}{
		{&c.claimFirstOne, claimFirstSQL(one)},
		{&c.claimFirstMany, claimFirstSQL(many)},
		{&c.allOne, candidateSQL(one, true, "")},
		{&c.allMany, candidateSQL(many, true, "")},
		{&c.claim, "UPDATE instances SET state = 'claimed', sandbox_id = ? WHERE id = ? AND state = 'ready'"},
		{&c.unclaim, "UPDATE instances SET state = 'ready', sandbox_id = NULL WHERE id = ? AND sandbox_id = ?"},
		{&c.insertSandbox, sandboxInsert},
	} {
		st, err := s.write.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", err)
		}
		*p.dst = st
	}
	return nil
}

// sandboxArgs are the values of sandboxCols for a row; ports is the JSON
// of sb.Ports, passed in so that checkout can copy the instance's text.
func sandboxArgs(sb *standby.Sandbox, ports string) ([]any, error) {
	config, err := encodeJSON(sb.Config)
	if err != nil {
		return nil, err
	}
	labels, err := jsonMap(sb.Labels)
	if err != nil {
		return nil, err
	}
	annotations, err := jsonMap(sb.Annotations)
	if err != nil {
		return nil, err
	}
	checkout, err := encodeJSON(sb.WarmPoolCheckout)
	if err != nil {
		return nil, err
	}
	return []any{sb.ID, sb.ProjectID, sb.Template, sb.TemplateBuildID, config, sb.State, sb.Address, ports, sb.HostID, sb.InstanceID,
		micro(sb.CreatedAt), micro(sb.StartedAt), sb.TimeoutMS, micro(sb.ExpiresAt), microPtr(sb.StoppedAt), nullString(sb.Error),
		metadataText(sb.Metadata), labels, annotations, checkout, emptyNull(sb.WarmPoolCheckout.ID), sb.Version}, nil
}

func normalizeSandbox(sb *standby.Sandbox) {
	if sb.Ports == nil {
		sb.Ports = map[string]int{}
	}
	if sb.Labels == nil {
		sb.Labels = map[string]string{}
	}
	if sb.Annotations == nil {
		sb.Annotations = map[string]string{}
	}
	if len(sb.Metadata) == 0 {
		sb.Metadata = json.RawMessage("{}")
	}
}

func scanSandbox(r scanner) (*standby.Sandbox, error) {
	var sb standby.Sandbox
	var config, ports, metadata, labels, annotations, checkout string
	var created, started, expires int64
	var stopped sql.NullInt64
	var errText, pool sql.NullString
	if err := r.Scan(&sb.ID, &sb.ProjectID, &sb.Template, &sb.TemplateBuildID, &config, &sb.State, &sb.Address, &ports, &sb.HostID, &sb.InstanceID,
		&created, &started, &sb.TimeoutMS, &expires, &stopped, &errText, &metadata, &labels, &annotations, &checkout, &pool, &sb.Version); err != nil {
		return nil, err
	}
	if err := decodeJSON(config, &sb.Config); err != nil {
		return nil, err
	}
	if err := decodeJSON(checkout, &sb.WarmPoolCheckout); err != nil {
		return nil, err
	}
	var err error
	if sb.Ports, err = decodeMap[int](ports); err != nil {
		return nil, err
	}
	if sb.Labels, err = decodeMap[string](labels); err != nil {
		return nil, err
	}
	if sb.Annotations, err = decodeMap[string](annotations); err != nil {
		return nil, err
	}
	sb.Metadata = json.RawMessage(metadata)
	sb.Error = fromNullString(errText)
	sb.CreatedAt, sb.StartedAt, sb.ExpiresAt, sb.StoppedAt = fromMicro(created), fromMicro(started), fromMicro(expires), fromNullMicro(stopped)
	return &sb, nil
}

// candidate is one ready instance a checkout may claim.
type candidate struct {
	id, pool, build, host, address, ports string
	labels, poolLabels                    string
}

// Checkout claims one ready instance and creates its sandbox in one write
// of the group commit, so no instance is ever claimed twice and the
// sandbox is durable when Checkout returns.
// warm_pool_unavailable: no ready instance of an enabled listed pool
// matches.
func (s *Store) Checkout(ctx context.Context, req standby.CheckoutRequest) (*standby.Sandbox, error) {
	sb := req.Sandbox
	if sb == nil {
		return nil, errors.New("sqlite: checkout without a sandbox")
	}
	if len(req.PoolIDs) == 0 {
		return nil, standby.Errorf(standby.EWarmPoolUnavailable, "no warm pool to check out from")
	}
	var poolArg any = req.PoolIDs[0]
	first, all := s.stmts.claimFirstOne, s.stmts.allOne
	if len(req.PoolIDs) > 1 {
		b, err := json.Marshal(req.PoolIDs)
		if err != nil {
			return nil, err
		}
		poolArg, first, all = string(b), s.stmts.claimFirstMany, s.stmts.allMany
	}

	err := s.writer.doClean(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return s.checkout(ctx, tx, req, poolArg, first, all)
	})
	if err != nil {
		return nil, err
	}
	return sb, nil
}

// checkout is one checkout inside a write transaction: the claim and the
// insert run one after the other in it, so the writes batched before this
// one are visible and no instance can be claimed twice. A miss writes
// nothing.
func (s *Store) checkout(ctx context.Context, tx *sql.Tx, req standby.CheckoutRequest, poolArg any, first, all *sql.Stmt) error {
	sb := req.Sandbox
	var c candidate
	claimed := false
	if len(req.Selectors) == 0 {
		// Claims as it picks; a failure below must unclaim.
		err := tx.StmtContext(ctx, first).QueryRowContext(ctx, poolArg, req.ProjectID, req.BuildID, sb.ID).
			Scan(&c.id, &c.pool, &c.build, &c.host, &c.address, &c.ports)
		if errors.Is(err, sql.ErrNoRows) {
			return standby.Errorf(standby.EWarmPoolUnavailable, "no ready instance in the warm pool")
		}
		if err != nil {
			return dbError(err, "checkout")
		}
		claimed = true
	} else {
		found, err := pickBySelectors(ctx, tx.StmtContext(ctx, all), poolArg, req)
		if err != nil {
			return err
		}
		c = found
	}

	if sb.ProjectID == "" {
		sb.ProjectID = req.ProjectID
	}
	if sb.CreatedAt.IsZero() {
		sb.CreatedAt = req.Now
	}
	if sb.StartedAt.IsZero() {
		sb.StartedAt = req.Now
	}
	sb.InstanceID, sb.HostID, sb.Address, sb.TemplateBuildID = c.id, c.host, c.address, c.build
	sb.WarmPoolCheckout.ID, sb.WarmPoolCheckout.Hit = c.pool, true
	if sb.WarmPoolCheckout.Source == "" {
		sb.WarmPoolCheckout.Source = standby.SourceWarmPool
	}
	sb.Version = 1
	// The only write before the insert is the claim, and each statement is
	// atomic: every failure below undoes the claim, so it leaves the batch
	// as it found it (the writer runs checkouts without a savepoint).
	undo := func(err error) error {
		if !claimed {
			return err
		}
		res, uerr := tx.StmtContext(ctx, s.stmts.unclaim).ExecContext(ctx, c.id, sb.ID)
		if uerr != nil {
			return errors.Join(err, errBatchBroken, uerr)
		}
		if n, nerr := res.RowsAffected(); nerr != nil || n != 1 {
			return errors.Join(err, errBatchBroken, nerr)
		}
		return err
	}
	var err error
	if sb.Ports, err = decodeMap[int](c.ports); err != nil {
		return undo(err)
	}
	normalizeSandbox(sb)
	args, err := sandboxArgs(sb, c.ports)
	if err != nil {
		return undo(err)
	}
	if !claimed {
		res, err := tx.StmtContext(ctx, s.stmts.claim).ExecContext(ctx, sb.ID, c.id)
		if err != nil {
			return dbError(err, "checkout: claim instance")
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			// Impossible while every write goes through this one connection.
			return fmt.Errorf("sqlite: checkout: instance %s was not ready (%d rows, %v)", c.id, n, err)
		}
		claimed = true
	}
	if _, err := tx.StmtContext(ctx, s.stmts.insertSandbox).ExecContext(ctx, args...); err != nil {
		return undo(dbError(err, "checkout: create sandbox "+sb.ID))
	}
	return nil
}

// pickBySelectors loads every candidate ready longest first and returns
// the first one matching the first selector that matches any candidate.
// Labels are decoded lazily, once each, and only when a selector asks.
func pickBySelectors(ctx context.Context, st *sql.Stmt, poolArg any, req standby.CheckoutRequest) (candidate, error) {
	rows, err := st.QueryContext(ctx, poolArg, req.ProjectID, req.BuildID)
	if err != nil {
		return candidate{}, dbError(err, "checkout")
	}
	defer rows.Close()
	var cands []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.id, &c.pool, &c.build, &c.host, &c.address, &c.ports, &c.labels, &c.poolLabels); err != nil {
			return candidate{}, dbError(err, "checkout")
		}
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return candidate{}, dbError(err, "checkout")
	}
	rows.Close()

	own := make([]map[string]string, len(cands))
	poolLabels := map[string]map[string]string{}
	var decodeErr error
	labelsOf := func(j int) (map[string]string, map[string]string) {
		c := &cands[j]
		pl, ok := poolLabels[c.pool]
		if !ok {
			var err error
			if pl, err = decodeMap[string](c.poolLabels); err != nil {
				decodeErr = err
			}
			poolLabels[c.pool] = pl
		}
		if own[j] == nil {
			var err error
			if own[j], err = decodeMap[string](c.labels); err != nil {
				decodeErr = err
				own[j] = map[string]string{}
			}
		}
		return pl, own[j]
	}
	_, j := standby.SelectFirst(req.Selectors, len(cands), func(sel standby.Selector, j int) bool {
		base, over := labelsOf(j)
		return sel.MatchesOverlay(base, over)
	})
	if decodeErr != nil {
		return candidate{}, decodeErr
	}
	if j < 0 {
		return candidate{}, standby.Errorf(standby.EWarmPoolUnavailable, "no ready instance matches the selectors")
	}
	return cands[j], nil
}

// CreateSandbox stores a sandbox and claims its instance in the same
// transaction. not_found: instance; conflict: the instance is not warming
// or ready, or the sandbox id is taken.
func (s *Store) CreateSandbox(ctx context.Context, sb *standby.Sandbox) error {
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		inst, err := findInstance(ctx, tx, sb.InstanceID)
		if err != nil {
			return err
		}
		if inst.State != standby.InstanceWarming && inst.State != standby.InstanceReady {
			return standby.Errorf(standby.EConflict, "instance %s is %s, not warming or ready", inst.ID, inst.State)
		}
		res, err := tx.ExecContext(ctx, "UPDATE instances SET state = 'claimed', sandbox_id = ? WHERE id = ?", sb.ID, inst.ID)
		if err := affected(res, err, "instance", inst.ID, "create sandbox: claim instance"); err != nil {
			return err
		}
		if sb.HostID == "" {
			sb.HostID = inst.HostID
		}
		if sb.Address == "" {
			sb.Address = inst.Address
		}
		if sb.TemplateBuildID == "" {
			sb.TemplateBuildID = inst.TemplateBuildID
		}
		if sb.Ports == nil {
			sb.Ports = inst.Ports
		}
		sb.Version = 1
		normalizeSandbox(sb)
		ports, err := jsonMap(sb.Ports)
		if err != nil {
			return err
		}
		args, err := sandboxArgs(sb, ports)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, sandboxInsert, args...)
		return dbError(err, "create sandbox "+sb.ID)
	})
}

func findSandbox(ctx context.Context, q querier, id string) (*standby.Sandbox, error) {
	sb, err := scanSandbox(q.QueryRowContext(ctx, "SELECT "+sandboxCols+" FROM sandboxes WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("sandbox", id)
	}
	return sb, dbError(err, "find sandbox")
}

// FindSandbox returns a sandbox. not_found.
func (s *Store) FindSandbox(ctx context.Context, id string) (*standby.Sandbox, error) {
	return findSandbox(ctx, s.reader, id)
}

// FindSandboxes lists sandboxes in creation order.
func (s *Store) FindSandboxes(ctx context.Context, f standby.SandboxFilter) ([]*standby.Sandbox, string, error) {
	w := &where{}
	if f.ProjectID != "" {
		w.add("project_id = ?", f.ProjectID)
	}
	w.in("state", f.States)
	if f.Template != "" {
		w.add("template = ?", f.Template)
	}
	if f.WarmPoolID != "" {
		w.add("pool_id = ?", f.WarmPoolID)
	}
	if f.ExpiresBefore != nil {
		w.add("state = 'running' AND expires_at < ?", micro(*f.ExpiresBefore))
	}
	w.labels("labels", f.Labels)
	return listByID(ctx, s.reader, "sb", "SELECT "+sandboxCols+" FROM sandboxes", "id", w, f.Page, scanSandbox, func(sb *standby.Sandbox) string { return sb.ID })
}

// UpdateSandbox edits a sandbox; version+1. not_found.
func (s *Store) UpdateSandbox(ctx context.Context, id string, fn func(*standby.Sandbox) error) (*standby.Sandbox, error) {
	var sb *standby.Sandbox
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if sb, err = findSandbox(ctx, tx, id); err != nil {
			return err
		}
		version := sb.Version
		if err := fn(sb); err != nil {
			return err
		}
		sb.ID, sb.Version = id, version+1
		normalizeSandbox(sb)
		ports, err := jsonMap(sb.Ports)
		if err != nil {
			return err
		}
		args, err := sandboxArgs(sb, ports)
		if err != nil {
			return err
		}
		// Same column order as the insert: every column but id, then id.
		_, err = tx.ExecContext(ctx, `UPDATE sandboxes SET id = ?1, project_id = ?2, template = ?3, template_build_id = ?4, config = ?5,
			state = ?6, address = ?7, ports = ?8, host_id = ?9, instance_id = ?10, created_at = ?11, started_at = ?12, timeout_ms = ?13,
			expires_at = ?14, stopped_at = ?15, error = ?16, metadata = ?17, labels = ?18, annotations = ?19, checkout = ?20,
			pool_id = ?21, version = ?22 WHERE id = ?1`, args...)
		return dbError(err, "update sandbox "+id)
	})
	if err != nil {
		return nil, err
	}
	return sb, nil
}
