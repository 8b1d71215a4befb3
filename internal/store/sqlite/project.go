package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/standbyhq/standby"
)

const projectCols = "id, name, quotas, version, created_at, updated_at"

type scanner interface{ Scan(dest ...any) error }

func scanProject(r scanner) (*standby.Project, error) {
	var p standby.Project
	var quotas string
	var created, updated int64
	if err := r.Scan(&p.ID, &p.Name, &quotas, &p.Version, &created, &updated); err != nil {
		return nil, err
	}
	if err := decodeJSON(quotas, &p.Quotas); err != nil {
		return nil, err
	}
	p.CreatedAt, p.UpdatedAt = fromMicro(created), fromMicro(updated)
	return &p, nil
}

// CreateProject stores a new project. conflict: name taken.
func (s *Store) CreateProject(ctx context.Context, p *standby.Project) error {
	p.Version = 1
	quotas, err := encodeJSON(p.Quotas)
	if err != nil {
		return err
	}
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO projects ("+projectCols+") VALUES (?, ?, ?, ?, ?, ?)",
			p.ID, p.Name, quotas, p.Version, micro(p.CreatedAt), micro(p.UpdatedAt))
		return dbError(err, "create project "+p.Name)
	})
}

func findProject(ctx context.Context, q querier, col, v string) (*standby.Project, error) {
	p, err := scanProject(q.QueryRowContext(ctx, "SELECT "+projectCols+" FROM projects WHERE "+col+" = ?", v))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("project", v)
	}
	return p, dbError(err, "find project")
}

// FindProject returns a project by id. not_found.
func (s *Store) FindProject(ctx context.Context, id string) (*standby.Project, error) {
	return findProject(ctx, s.reader, "id", id)
}

// FindProjectByName returns a project by name. not_found.
func (s *Store) FindProjectByName(ctx context.Context, name string) (*standby.Project, error) {
	return findProject(ctx, s.reader, "name", name)
}

// FindProjects lists projects in creation order.
func (s *Store) FindProjects(ctx context.Context, f standby.ProjectFilter) ([]*standby.Project, string, error) {
	return listByID(ctx, s.reader, "prj", "SELECT "+projectCols+" FROM projects", "id", &where{}, f.Page, scanProject, func(p *standby.Project) string { return p.ID })
}

// UpdateProject edits a project. not_found; conflict: name taken.
func (s *Store) UpdateProject(ctx context.Context, id string, fn func(*standby.Project) error) (*standby.Project, error) {
	var p *standby.Project
	err := s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if p, err = findProject(ctx, tx, "id", id); err != nil {
			return err
		}
		version := p.Version
		if err := fn(p); err != nil {
			return err
		}
		p.ID, p.Version = id, version+1
		quotas, err := encodeJSON(p.Quotas)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE projects SET name = ?, quotas = ?, version = ?, created_at = ?, updated_at = ? WHERE id = ?",
			p.Name, quotas, p.Version, micro(p.CreatedAt), micro(p.UpdatedAt), id)
		return dbError(err, "update project "+id)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

const apiKeyCols = "id, project_id, name, role, hash, prefix, created_at, revoked_at"

func scanAPIKey(r scanner) (*standby.APIKey, error) {
	var k standby.APIKey
	var created int64
	var revoked sql.NullInt64
	if err := r.Scan(&k.ID, &k.ProjectID, &k.Name, &k.Role, &k.Hash, &k.Prefix, &created, &revoked); err != nil {
		return nil, err
	}
	k.CreatedAt, k.RevokedAt = fromMicro(created), fromNullMicro(revoked)
	return &k, nil
}

// CreateAPIKey stores a key (its hash, never the secret). not_found: project.
func (s *Store) CreateAPIKey(ctx context.Context, k *standby.APIKey) error {
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO api_keys ("+apiKeyCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			k.ID, k.ProjectID, k.Name, k.Role, k.Hash, k.Prefix, micro(k.CreatedAt), microPtr(k.RevokedAt))
		if standby.IsCode(dbError(err, ""), standby.ENotFound) {
			return notFound("project", k.ProjectID)
		}
		return dbError(err, "create api key")
	})
}

// FindAPIKey returns a key by id, revoked or not. not_found.
func (s *Store) FindAPIKey(ctx context.Context, id string) (*standby.APIKey, error) {
	k, err := scanAPIKey(s.reader.QueryRowContext(ctx, "SELECT "+apiKeyCols+" FROM api_keys WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("api key", id)
	}
	return k, dbError(err, "find api key")
}

// FindAPIKeyByHash returns the unrevoked key with that hash. not_found.
func (s *Store) FindAPIKeyByHash(ctx context.Context, hash string) (*standby.APIKey, error) {
	k, err := scanAPIKey(s.reader.QueryRowContext(ctx, "SELECT "+apiKeyCols+" FROM api_keys WHERE hash = ? AND revoked_at IS NULL LIMIT 1", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, standby.Errorf(standby.ENotFound, "api key not found")
	}
	return k, dbError(err, "find api key")
}

// FindAPIKeys lists a project's keys in creation order.
func (s *Store) FindAPIKeys(ctx context.Context, f standby.APIKeyFilter) ([]*standby.APIKey, string, error) {
	w := &where{}
	w.add("project_id = ?", f.ProjectID)
	if !f.IncludeRevoked {
		w.add("revoked_at IS NULL")
	}
	return listByID(ctx, s.reader, "key", "SELECT "+apiKeyCols+" FROM api_keys", "id", w, f.Page, scanAPIKey, func(k *standby.APIKey) string { return k.ID })
}

// RevokeAPIKey revokes a key at once. not_found (also when already revoked).
func (s *Store) RevokeAPIKey(ctx context.Context, id string, now time.Time) error {
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", micro(now), id)
		return affected(res, err, "api key", id, "revoke api key")
	})
}

const hostCols = "id, name, state, host_pool_id, cell_id, address, isolation, capacity, max_instances, last_heartbeat_at, created_at"

// UpsertHost creates or replaces a host record.
func (s *Store) UpsertHost(ctx context.Context, h *standby.Host) error {
	capacity, err := encodeJSON(h.Capacity)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT OR REPLACE INTO hosts ("+hostCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			h.ID, h.Name, h.State, h.HostPoolID, h.CellID, h.Address, h.Isolation, capacity, h.MaxInstances,
			micro(h.LastHeartbeatAt), micro(h.CreatedAt))
		return dbError(err, "upsert host "+h.ID)
	})
}

func scanHost(r scanner) (*standby.Host, error) {
	var h standby.Host
	var capacity string
	var hb, created int64
	if err := r.Scan(&h.ID, &h.Name, &h.State, &h.HostPoolID, &h.CellID, &h.Address, &h.Isolation, &capacity, &h.MaxInstances, &hb, &created); err != nil {
		return nil, err
	}
	if err := decodeJSON(capacity, &h.Capacity); err != nil {
		return nil, err
	}
	h.LastHeartbeatAt, h.CreatedAt = fromMicro(hb), fromMicro(created)
	return &h, nil
}

// FindHost returns a host. not_found.
func (s *Store) FindHost(ctx context.Context, id string) (*standby.Host, error) {
	h, err := scanHost(s.reader.QueryRowContext(ctx, "SELECT "+hostCols+" FROM hosts WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("host", id)
	}
	return h, dbError(err, "find host")
}

// FindHosts lists every host in id order.
func (s *Store) FindHosts(ctx context.Context) ([]*standby.Host, error) {
	rows, err := s.reader.QueryContext(ctx, "SELECT "+hostCols+" FROM hosts ORDER BY id")
	if err != nil {
		return nil, dbError(err, "find hosts")
	}
	defer rows.Close()
	out := []*standby.Host{}
	for rows.Next() {
		h, err := scanHost(rows)
		if err != nil {
			return nil, dbError(err, "find hosts")
		}
		out = append(out, h)
	}
	return out, dbError(rows.Err(), "find hosts")
}

const idemCols = "scope, key, request_hash, status, body, headers, created_at"

// ReserveIdempotencyKey stores rec as in progress unless a record with the
// same scope and key exists, which it returns instead; nil, nil when rec
// was stored.
func (s *Store) ReserveIdempotencyKey(ctx context.Context, rec *standby.IdempotencyRecord) (*standby.IdempotencyRecord, error) {
	headers, err := jsonMap(rec.Headers)
	if err != nil {
		return nil, err
	}
	var existing *standby.IdempotencyRecord
	err = s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "INSERT INTO idempotency_keys ("+idemCols+") VALUES (?, ?, ?, 0, ?, ?, ?) ON CONFLICT (scope, key) DO NOTHING",
			rec.Scope, rec.Key, rec.RequestHash, rec.Body, headers, micro(rec.CreatedAt))
		if err != nil {
			return dbError(err, "reserve idempotency key")
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return dbError(err, "reserve idempotency key")
		}
		var e standby.IdempotencyRecord
		var hdr string
		var created int64
		err = tx.QueryRowContext(ctx, "SELECT "+idemCols+" FROM idempotency_keys WHERE scope = ? AND key = ?", rec.Scope, rec.Key).
			Scan(&e.Scope, &e.Key, &e.RequestHash, &e.Status, &e.Body, &hdr, &created)
		if err != nil {
			return dbError(err, "reserve idempotency key")
		}
		if e.Headers, err = decodeMap[string](hdr); err != nil {
			return err
		}
		e.CreatedAt = fromMicro(created)
		existing = &e
		return nil
	})
	if err != nil {
		return nil, err
	}
	if existing == nil {
		rec.Status = 0
	}
	return existing, nil
}

// CompleteIdempotencyKey stores the response of a reserved key. not_found:
// no such reservation.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, rec *standby.IdempotencyRecord) error {
	headers, err := jsonMap(rec.Headers)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE idempotency_keys SET status = ?, body = ?, headers = ? WHERE scope = ? AND key = ?",
			rec.Status, rec.Body, headers, rec.Scope, rec.Key)
		return affected(res, err, "idempotency key", rec.Key, "complete idempotency key")
	})
}

// ReleaseIdempotencyKey forgets a key that is still in progress; a
// completed one keeps replaying its response. Releasing an unknown key is
// not an error.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, scope, key string) error {
	return s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND status = 0", scope, key)
		return dbError(err, "release idempotency key")
	})
}

// DeleteIdempotencyKeys forgets records created before t.
func (s *Store) DeleteIdempotencyKeys(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.inTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE created_at < ?", micro(before))
		if err != nil {
			return dbError(err, "delete idempotency keys")
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}
