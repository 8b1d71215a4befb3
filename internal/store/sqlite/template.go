package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"

	"github.com/standbyhq/standby"
)

const templateCols = "id, project_id, name, description, labels, builtin, version, created_at, updated_at"

func scanTemplate(r scanner) (*standby.Template, error) {
	var t standby.Template
	var labels string
	var created, updated int64
	if err := r.Scan(&t.ID, &t.ProjectID, &t.Name, &t.Description, &labels, &t.Builtin, &t.Version, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if t.Labels, err = decodeMap[string](labels); err != nil {
		return nil, err
	}
	t.CreatedAt, t.UpdatedAt = fromMicro(created), fromMicro(updated)
	t.Tags = map[string]string{}
	return &t, nil
}

// CreateTemplate stores a template (Version 1). conflict: name taken in the
// project.
func (s *Store) CreateTemplate(ctx context.Context, t *standby.Template) error {
	labels, err := jsonMap(t.Labels)
	if err != nil {
		return err
	}
	t.Version = 1
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	if t.Tags == nil {
		t.Tags = map[string]string{}
	}
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO templates ("+templateCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			t.ID, t.ProjectID, t.Name, t.Description, labels, t.Builtin, t.Version, micro(t.CreatedAt), micro(t.UpdatedAt))
		return dbError(err, "create template "+t.Name)
	})
}

func findTemplate(ctx context.Context, q querier, projectID, name string) (*standby.Template, error) {
	t, err := scanTemplate(q.QueryRowContext(ctx, "SELECT "+templateCols+" FROM templates WHERE project_id = ? AND name = ?", projectID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, standby.Errorf(standby.ENotFound, "template %q not found", name)
	}
	return t, dbError(err, "find template")
}

// FindTemplate returns a template with its tags. not_found.
func (s *Store) FindTemplate(ctx context.Context, projectID, name string) (*standby.Template, error) {
	t, err := findTemplate(ctx, s.reader, projectID, name)
	if err != nil {
		return nil, err
	}
	if err := fillTemplateTags(ctx, s.reader, []*standby.Template{t}); err != nil {
		return nil, err
	}
	return t, nil
}

// fillTemplateTags loads the tags of several templates in one query.
func fillTemplateTags(ctx context.Context, q querier, ts []*standby.Template) error {
	if len(ts) == 0 {
		return nil
	}
	byID := make(map[string]*standby.Template, len(ts))
	ids := make([]string, 0, len(ts))
	for _, t := range ts {
		byID[t.ID] = t
		ids = append(ids, t.ID)
	}
	w := &where{}
	w.in("template_id", ids)
	rows, err := q.QueryContext(ctx, "SELECT template_id, tag, build_id FROM tags"+w.String(), w.args...)
	if err != nil {
		return dbError(err, "find tags")
	}
	defer rows.Close()
	for rows.Next() {
		var tid, tag, bid string
		if err := rows.Scan(&tid, &tag, &bid); err != nil {
			return dbError(err, "find tags")
		}
		byID[tid].Tags[tag] = bid
	}
	return dbError(rows.Err(), "find tags")
}

// FindTemplates lists templates in creation order.
func (s *Store) FindTemplates(ctx context.Context, f standby.TemplateFilter) ([]*standby.Template, string, error) {
	w := &where{}
	w.add("project_id = ?", f.ProjectID)
	w.labels("labels", f.Labels)
	out, next, err := listByID(ctx, s.reader, "tpl", "SELECT "+templateCols+" FROM templates", "id", w, f.Page, scanTemplate, func(t *standby.Template) string { return t.ID })
	if err != nil {
		return nil, "", err
	}
	if err := fillTemplateTags(ctx, s.reader, out); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// DeleteTemplate deletes a template and its builds and tags. not_found;
// conflict while a pool that is not deleted resolves to one of its builds,
// or a sandbox that has not ended runs one.
func (s *Store) DeleteTemplate(ctx context.Context, projectID, name string) error {
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t, err := findTemplate(ctx, tx, projectID, name)
		if err != nil {
			return err
		}
		var pools, sandboxes int
		err = tx.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM warm_pools p JOIN builds b ON b.id = p.resolved_template_build_id
				WHERE b.template_id = ?1 AND p.state != 'deleted'),
			(SELECT count(*) FROM sandboxes x JOIN builds b ON b.id = x.template_build_id
				WHERE b.template_id = ?1 AND x.state IN ('running', 'stopping'))`, t.ID).Scan(&pools, &sandboxes)
		if err != nil {
			return dbError(err, "delete template")
		}
		if pools > 0 {
			return standby.Errorf(standby.EConflict, "template %q is used by %d warm pool(s)", name, pools)
		}
		if sandboxes > 0 {
			return standby.Errorf(standby.EConflict, "template %q is used by %d running sandbox(es)", name, sandboxes)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM templates WHERE id = ?", t.ID)
		return dbError(err, "delete template")
	})
}

// buildSpec is the JSON of a build's fields that are never filtered on.
type buildSpec struct {
	Status               string               `json:"status"`
	CanonicalRef         string               `json:"canonical_ref"`
	RuntimeArtifactID    string               `json:"runtime_artifact_id"`
	CompatibilityKey     string               `json:"compatibility_key"`
	StartCmd             []string             `json:"start_cmd"`
	Env                  map[string]string    `json:"env"`
	Workdir              string               `json:"workdir"`
	Files                map[string]string    `json:"files"`
	Ports                []standby.Port       `json:"ports"`
	HealthCheck          *standby.HealthCheck `json:"health_check"`
	ReadinessHealthCheck *standby.HealthCheck `json:"readiness_health_check"`
	Resources            standby.Resources    `json:"resources"`
}

const buildCols = "id, project_id, template, number, spec, created_at"

func scanBuild(r scanner) (*standby.Build, error) {
	var b standby.Build
	var spec string
	var created int64
	if err := r.Scan(&b.ID, &b.ProjectID, &b.Template, &b.Number, &spec, &created); err != nil {
		return nil, err
	}
	var sp buildSpec
	if err := decodeJSON(spec, &sp); err != nil {
		return nil, err
	}
	b.Status, b.CanonicalRef, b.RuntimeArtifactID, b.CompatibilityKey = sp.Status, sp.CanonicalRef, sp.RuntimeArtifactID, sp.CompatibilityKey
	b.StartCmd, b.Env, b.Workdir, b.Files, b.Ports = sp.StartCmd, sp.Env, sp.Workdir, sp.Files, sp.Ports
	b.HealthCheck, b.ReadinessHealthCheck, b.Resources = sp.HealthCheck, sp.ReadinessHealthCheck, sp.Resources
	b.CreatedAt = fromMicro(created)
	b.Normalize()
	return &b, nil
}

// CreateBuild stores an immutable build: it assigns Number, moves "latest"
// and each of b.Tags to it, and fills b.Tags with every tag now on it.
// not_found: template.
func (s *Store) CreateBuild(ctx context.Context, b *standby.Build) error {
	b.Normalize()
	spec, err := encodeJSON(buildSpec{
		Status: b.Status, CanonicalRef: b.CanonicalRef, RuntimeArtifactID: b.RuntimeArtifactID, CompatibilityKey: b.CompatibilityKey,
		StartCmd: b.StartCmd, Env: b.Env, Workdir: b.Workdir, Files: b.Files, Ports: b.Ports,
		HealthCheck: b.HealthCheck, ReadinessHealthCheck: b.ReadinessHealthCheck, Resources: b.Resources,
	})
	if err != nil {
		return err
	}
	tags := append([]string{standby.TagLatest}, b.Tags...)
	slices.Sort(tags)
	tags = slices.Compact(tags)
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t, err := findTemplate(ctx, tx, b.ProjectID, b.Template)
		if err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(number), 0) + 1 FROM builds WHERE template_id = ?", t.ID).Scan(&b.Number); err != nil {
			return dbError(err, "create build")
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO builds (id, project_id, template_id, template, number, spec, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
			b.ID, b.ProjectID, t.ID, b.Template, b.Number, spec, micro(b.CreatedAt)); err != nil {
			return dbError(err, "create build")
		}
		for _, tag := range tags {
			if err := setTag(ctx, tx, t.ID, tag, b.ID); err != nil {
				return err
			}
		}
		b.Tags = tags
		return nil
	})
}

func setTag(ctx context.Context, tx *sql.Tx, templateID, tag, buildID string) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO tags (template_id, tag, build_id) VALUES (?, ?, ?) ON CONFLICT (template_id, tag) DO UPDATE SET build_id = excluded.build_id",
		templateID, tag, buildID)
	return dbError(err, "set tag "+tag)
}

// fillBuildTags loads the tags of several builds in one query.
func fillBuildTags(ctx context.Context, q querier, bs []*standby.Build) error {
	if len(bs) == 0 {
		return nil
	}
	byID := make(map[string]*standby.Build, len(bs))
	ids := make([]string, 0, len(bs))
	for _, b := range bs {
		byID[b.ID] = b
		ids = append(ids, b.ID)
	}
	w := &where{}
	w.in("build_id", ids)
	rows, err := q.QueryContext(ctx, "SELECT build_id, tag FROM tags"+w.String()+" ORDER BY tag", w.args...)
	if err != nil {
		return dbError(err, "find tags")
	}
	defer rows.Close()
	for rows.Next() {
		var bid, tag string
		if err := rows.Scan(&bid, &tag); err != nil {
			return dbError(err, "find tags")
		}
		byID[bid].Tags = append(byID[bid].Tags, tag)
	}
	return dbError(rows.Err(), "find tags")
}

// FindBuild returns a build with its current tags. not_found.
func (s *Store) FindBuild(ctx context.Context, projectID, id string) (*standby.Build, error) {
	b, err := scanBuild(s.reader.QueryRowContext(ctx, "SELECT "+buildCols+" FROM builds WHERE project_id = ? AND id = ?", projectID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("build", id)
	}
	if err != nil {
		return nil, dbError(err, "find build")
	}
	if err := fillBuildTags(ctx, s.reader, []*standby.Build{b}); err != nil {
		return nil, err
	}
	return b, nil
}

// FindBuilds lists a template's builds newest first. not_found: template.
func (s *Store) FindBuilds(ctx context.Context, f standby.BuildFilter) ([]*standby.Build, string, error) {
	after, err := parseToken("tb", f.Page.Token)
	if err != nil {
		return nil, "", err
	}
	below := int64(1 << 62)
	if after != "" {
		if below, err = strconv.ParseInt(after, 10, 64); err != nil {
			return nil, "", standby.Errorf(standby.EBadRequest, "malformed page token")
		}
	}
	// One read transaction so the template and its builds agree.
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, "", dbError(err, "find builds")
	}
	defer tx.Rollback()
	t, err := findTemplate(ctx, tx, f.ProjectID, f.Template)
	if err != nil {
		return nil, "", err
	}
	limit := f.Page.Limit()
	rows, err := tx.QueryContext(ctx, "SELECT "+buildCols+" FROM builds WHERE template_id = ? AND number < ? ORDER BY number DESC LIMIT ?", t.ID, below, limit+1)
	if err != nil {
		return nil, "", dbError(err, "find builds")
	}
	defer rows.Close()
	out := []*standby.Build{}
	next := ""
	for rows.Next() {
		if len(out) == limit {
			next = makeToken("tb", strconv.FormatInt(out[len(out)-1].Number, 10))
			break
		}
		b, err := scanBuild(rows)
		if err != nil {
			return nil, "", dbError(err, "find builds")
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, "", dbError(err, "find builds")
	}
	rows.Close()
	if err := fillBuildTags(ctx, tx, out); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// FindTag returns the build id a tag points at. not_found.
func (s *Store) FindTag(ctx context.Context, projectID, template, tag string) (string, error) {
	var id string
	err := s.reader.QueryRowContext(ctx, "SELECT g.build_id FROM tags g JOIN templates t ON t.id = g.template_id WHERE t.project_id = ? AND t.name = ? AND g.tag = ?",
		projectID, template, tag).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", standby.Errorf(standby.ENotFound, "template %q has no tag %q", template, tag)
	}
	return id, dbError(err, "find tag")
}

// SetTag points a tag at a build of the same template. not_found: template
// or build.
func (s *Store) SetTag(ctx context.Context, projectID, template, tag, buildID string) error {
	return s.specTx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		t, err := findTemplate(ctx, tx, projectID, template)
		if err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM builds WHERE id = ? AND template_id = ?", buildID, t.ID).Scan(&n); err != nil {
			return dbError(err, "set tag")
		}
		if n == 0 {
			return standby.Errorf(standby.ENotFound, "template %q has no build %s", template, buildID)
		}
		return setTag(ctx, tx, t.ID, tag, buildID)
	})
}
