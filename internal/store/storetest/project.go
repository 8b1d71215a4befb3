package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

func testProjects(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	p := newProject(t, s, "alpha")
	got, err := s.FindProject(ctx, p.ID)
	must(t, err)
	equal(t, "version", got.Version, int64(1))
	got, err = s.FindProjectByName(ctx, "alpha")
	must(t, err)
	equal(t, "by name", got.ID, p.ID)

	dup := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "alpha", Version: 1, CreatedAt: base(), UpdatedAt: base()}
	wantCode(t, s.CreateProject(ctx, dup), standby.EConflict)

	later := base().Add(time.Second)
	upd, err := s.UpdateProject(ctx, p.ID, func(p *standby.Project) error {
		p.Name = "alpha2"
		p.Quotas = standby.Quotas{MaxSandboxes: standby.Ptr(3), MaxVCPUs: standby.Ptr(8)}
		p.UpdatedAt = later
		return nil
	})
	must(t, err)
	equal(t, "version after update", upd.Version, int64(2))
	got, err = s.FindProject(ctx, p.ID)
	must(t, err)
	equal(t, "updated project", got, upd)
	equal(t, "quotas", got.Quotas, standby.Quotas{MaxSandboxes: standby.Ptr(3), MaxVCPUs: standby.Ptr(8)})
	equal(t, "updated_at", got.UpdatedAt, later)
	upd, err = s.UpdateProject(ctx, p.ID, func(*standby.Project) error { return nil })
	must(t, err)
	equal(t, "version after second update", upd.Version, int64(3))
	_, err = s.FindProjectByName(ctx, "alpha")
	wantCode(t, err, standby.ENotFound)

	newProject(t, s, "beta")
	_, err = s.UpdateProject(ctx, p.ID, func(p *standby.Project) error { p.Name = "beta"; return nil })
	wantCode(t, err, standby.EConflict)
	got, err = s.FindProject(ctx, p.ID)
	must(t, err)
	equal(t, "project after conflicting rename", got, upd)
}

func testProjectsPaging(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	want := ids(standby.PrefixProject, 7)
	// Created out of id order: lists follow creation order, which ids encode.
	for _, i := range []int{3, 0, 6, 1, 5, 2, 4} {
		p := &standby.Project{ID: want[i], Name: name("proj", i), Version: 1, CreatedAt: base(), UpdatedAt: base()}
		must(t, s.CreateProject(ctx, p))
	}
	for _, size := range []int{1, 2, 3, 7, 100} {
		got := listAll(t, size, func(pg standby.Page) ([]*standby.Project, string, error) {
			return s.FindProjects(ctx, standby.ProjectFilter{Page: pg})
		})
		equal(t, "project ids", idsOf(got, func(p *standby.Project) string { return p.ID }), want)
	}
	// Size 0 means the default size.
	got, next, err := s.FindProjects(ctx, standby.ProjectFilter{})
	must(t, err)
	equal(t, "default page", len(got), 7)
	equal(t, "default page next", next, "")
}

func testAPIKeys(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	p := newProject(t, s, "keys")
	other := newProject(t, s, "other")
	keyIDs := ids(standby.PrefixAPIKey, 3)
	var keys []*standby.APIKey
	for i, id := range keyIDs {
		k := &standby.APIKey{ID: id, ProjectID: p.ID, Name: name("k", i), Role: standby.RoleDeveloper,
			Hash: standby.HashKey(name("secret", i)), Prefix: "sbk_abc", CreatedAt: base()}
		must(t, s.CreateAPIKey(ctx, k))
		keys = append(keys, k)
	}
	must(t, s.CreateAPIKey(ctx, &standby.APIKey{ID: standby.NewID(standby.PrefixAPIKey), ProjectID: other.ID, Name: "o",
		Role: standby.RoleViewer, Hash: standby.HashKey("o"), CreatedAt: base()}))
	missing := &standby.APIKey{ID: standby.NewID(standby.PrefixAPIKey), ProjectID: standby.NewID(standby.PrefixProject),
		Name: "x", Role: standby.RoleAdmin, Hash: "h", CreatedAt: base()}
	wantCode(t, s.CreateAPIKey(ctx, missing), standby.ENotFound)

	got, err := s.FindAPIKey(ctx, keys[1].ID)
	must(t, err)
	equal(t, "key", got, keys[1])
	got, err = s.FindAPIKeyByHash(ctx, keys[2].Hash)
	must(t, err)
	equal(t, "key by hash", got, keys[2])

	now := base().Add(time.Second)
	must(t, s.RevokeAPIKey(ctx, keys[1].ID, now))
	wantCode(t, s.RevokeAPIKey(ctx, keys[1].ID, now), standby.ENotFound)
	wantCode(t, s.RevokeAPIKey(ctx, standby.NewID(standby.PrefixAPIKey), now), standby.ENotFound)
	_, err = s.FindAPIKeyByHash(ctx, keys[1].Hash)
	wantCode(t, err, standby.ENotFound)
	got, err = s.FindAPIKey(ctx, keys[1].ID)
	must(t, err)
	equal(t, "revoked_at", got.RevokedAt, &now)

	list := listAll(t, 1, func(pg standby.Page) ([]*standby.APIKey, string, error) {
		return s.FindAPIKeys(ctx, standby.APIKeyFilter{ProjectID: p.ID, Page: pg})
	})
	equal(t, "unrevoked keys", idsOf(list, func(k *standby.APIKey) string { return k.ID }), []string{keyIDs[0], keyIDs[2]})
	list = listAll(t, 2, func(pg standby.Page) ([]*standby.APIKey, string, error) {
		return s.FindAPIKeys(ctx, standby.APIKeyFilter{ProjectID: p.ID, IncludeRevoked: true, Page: pg})
	})
	equal(t, "all keys", idsOf(list, func(k *standby.APIKey) string { return k.ID }), keyIDs)
}

func testTemplates(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	p := newProject(t, s, "tpl")
	other := newProject(t, s, "tpl2")
	a := newTemplate(t, s, p.ID, "a", map[string]string{"team": "x", "tier": "1"})
	b := newTemplate(t, s, p.ID, "b", map[string]string{"team": "y"})
	c := newTemplate(t, s, p.ID, "c", nil)
	newTemplate(t, s, other.ID, "a", nil) // same name, other project: fine

	dup := &standby.Template{ID: standby.NewID(standby.PrefixTemplate), ProjectID: p.ID, Name: "a", CreatedAt: base(), UpdatedAt: base()}
	wantCode(t, s.CreateTemplate(ctx, dup), standby.EConflict)

	got, err := s.FindTemplate(ctx, p.ID, "c")
	must(t, err)
	want := *c
	want.Labels, want.Tags = map[string]string{}, map[string]string{}
	equal(t, "template without labels or builds", got, &want)
	if got.Labels == nil || got.Tags == nil {
		t.Fatalf("nil maps in %+v", got)
	}
	_, err = s.FindTemplate(ctx, other.ID, "b")
	wantCode(t, err, standby.ENotFound)

	all := []*standby.Template{a, b, c}
	slices.SortFunc(all, func(x, y *standby.Template) int { return cmpString(x.ID, y.ID) })
	tests := []struct {
		name   string
		labels map[string]string
		want   []*standby.Template
	}{
		{"all", nil, all},
		{"one label", map[string]string{"team": "x"}, []*standby.Template{a}},
		{"two labels", map[string]string{"team": "x", "tier": "1"}, []*standby.Template{a}},
		{"label value differs", map[string]string{"team": "z"}, nil},
		{"label absent", map[string]string{"nope": ""}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := listAll(t, 1, func(pg standby.Page) ([]*standby.Template, string, error) {
				return s.FindTemplates(ctx, standby.TemplateFilter{ProjectID: p.ID, Labels: tt.labels, Page: pg})
			})
			equal(t, "template ids", idsOf(got, func(x *standby.Template) string { return x.ID }),
				idsOf(tt.want, func(x *standby.Template) string { return x.ID }))
		})
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testBuilds(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	p := newProject(t, s, "builds")
	newTemplate(t, s, p.ID, "a", nil)
	newTemplate(t, s, p.ID, "b", nil)

	a1 := buildOf(p.ID, "a", "stable", "stable", "v1")
	must(t, s.CreateBuild(ctx, a1))
	equal(t, "a1 number", a1.Number, int64(1))
	equal(t, "a1 tags", a1.Tags, []string{"latest", "stable", "v1"})
	a2 := newBuild(t, s, p.ID, "a")
	equal(t, "a2 number", a2.Number, int64(2))
	equal(t, "a2 tags", a2.Tags, []string{"latest"})
	b1 := newBuild(t, s, p.ID, "b")
	equal(t, "b1 number (per template)", b1.Number, int64(1))
	a3 := newBuild(t, s, p.ID, "a", "stable")
	equal(t, "a3 number", a3.Number, int64(3))
	equal(t, "a3 tags", a3.Tags, []string{"latest", "stable"})

	got, err := s.FindBuild(ctx, p.ID, a1.ID)
	must(t, err)
	want := *a1
	want.Tags = []string{"v1"} // latest and stable moved on
	equal(t, "a1 round trip", got, &want)
	got, err = s.FindBuild(ctx, p.ID, a2.ID)
	must(t, err)
	if got.Tags == nil || len(got.Tags) != 0 {
		t.Fatalf("a build without tags has Tags %#v, want []", got.Tags)
	}
	tpl, err := s.FindTemplate(ctx, p.ID, "a")
	must(t, err)
	equal(t, "template tags", tpl.Tags, map[string]string{"latest": a3.ID, "stable": a3.ID, "v1": a1.ID})

	// Minimal build: nil maps and slices come back empty, not nil.
	bare := &standby.Build{ID: standby.NewID(standby.PrefixBuild), ProjectID: p.ID, Template: "b", Status: standby.BuildFailed,
		StartCmd: []string{"x"}, CreatedAt: base()}
	must(t, s.CreateBuild(ctx, bare))
	got, err = s.FindBuild(ctx, p.ID, bare.ID)
	must(t, err)
	if got.Env == nil || got.Files == nil || got.Ports == nil || got.Tags == nil || got.StartCmd == nil {
		t.Fatalf("nil maps or slices in %#v", got)
	}
	if got.HealthCheck != nil || got.ReadinessHealthCheck != nil {
		t.Fatalf("health checks appeared: %#v", got)
	}

	_, err = s.FindBuild(ctx, standby.NewID(standby.PrefixProject), a1.ID)
	wantCode(t, err, standby.ENotFound)
	wantCode(t, s.CreateBuild(ctx, buildOf(p.ID, "nope")), standby.ENotFound)
	_, _, err = s.FindBuilds(ctx, standby.BuildFilter{ProjectID: p.ID, Template: "nope"})
	wantCode(t, err, standby.ENotFound)
}

func testBuildsPaging(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	p := newProject(t, s, "bp")
	newTemplate(t, s, p.ID, "a", nil)
	newTemplate(t, s, p.ID, "b", nil)
	var want []string
	for range 5 {
		want = append([]string{newBuild(t, s, p.ID, "a").ID}, want...) // newest first
		newBuild(t, s, p.ID, "b")
	}
	for _, size := range []int{1, 2, 5, 10} {
		got := listAll(t, size, func(pg standby.Page) ([]*standby.Build, string, error) {
			return s.FindBuilds(ctx, standby.BuildFilter{ProjectID: p.ID, Template: "a", Page: pg})
		})
		equal(t, "builds newest first", idsOf(got, func(b *standby.Build) string { return b.ID }), want)
		equal(t, "latest tag on newest", got[0].Tags, []string{"latest"})
		for i, b := range got {
			equal(t, "number", b.Number, int64(5-i))
		}
	}
}

func testTags(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	p := newProject(t, s, "tags")
	newTemplate(t, s, p.ID, "a", nil)
	newTemplate(t, s, p.ID, "b", nil)
	a1 := newBuild(t, s, p.ID, "a")
	a2 := newBuild(t, s, p.ID, "a")
	b1 := newBuild(t, s, p.ID, "b")

	id, err := s.FindTag(ctx, p.ID, "a", "latest")
	must(t, err)
	equal(t, "latest", id, a2.ID)
	must(t, s.SetTag(ctx, p.ID, "a", "stable", a1.ID))
	must(t, s.SetTag(ctx, p.ID, "a", "latest", a1.ID))
	id, err = s.FindTag(ctx, p.ID, "a", "latest")
	must(t, err)
	equal(t, "latest moved back", id, a1.ID)
	got, err := s.FindBuild(ctx, p.ID, a1.ID)
	must(t, err)
	equal(t, "a1 tags", got.Tags, []string{"latest", "stable"})
	must(t, s.SetTag(ctx, p.ID, "a", "stable", a2.ID))
	got, err = s.FindBuild(ctx, p.ID, a2.ID)
	must(t, err)
	equal(t, "a2 tags", got.Tags, []string{"stable"})

	tests := []struct {
		name, template, tag, build string
	}{
		{"build of another template", "a", "x", b1.ID},
		{"unknown build", "a", "x", standby.NewID(standby.PrefixBuild)},
		{"unknown template", "nope", "x", a1.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, s.SetTag(ctx, p.ID, tt.template, tt.tag, tt.build), standby.ENotFound)
			_, err := s.FindTag(ctx, p.ID, tt.template, tt.tag)
			wantCode(t, err, standby.ENotFound)
		})
	}
	_, err = s.FindTag(ctx, p.ID, "a", "nope")
	wantCode(t, err, standby.ENotFound)
	_, err = s.FindTag(ctx, standby.NewID(standby.PrefixProject), "a", "latest")
	wantCode(t, err, standby.ENotFound)
}

func testDeleteTemplate(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s) // pool-a resolves to echo's build
	wantCode(t, s.DeleteTemplate(ctx, w.project.ID, "nope"), standby.ENotFound)
	wantCode(t, s.DeleteTemplate(ctx, w.project.ID, "echo"), standby.EConflict)

	// A running sandbox of the build also holds the template.
	inst := newInstance(t, s, w.project.ID, w.pool, w.build.ID, standby.InstanceReady, 0, nil)
	sb, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: w.project.ID, PoolIDs: []string{w.pool.ID},
		Sandbox: sandboxOf(w.project.ID, "echo"), Now: base()})
	must(t, err)
	equal(t, "checked out", sb.InstanceID, inst.ID)
	_, err = s.UpdateWarmPool(ctx, w.pool.ID, func(p *standby.WarmPool) error {
		p.State, p.DeletedAt = standby.PoolDeleted, standby.Ptr(base())
		return nil
	})
	must(t, err)
	wantCode(t, s.DeleteTemplate(ctx, w.project.ID, "echo"), standby.EConflict)
	for _, state := range []string{standby.SandboxStopping, standby.SandboxStopped} {
		_, err = s.UpdateSandbox(ctx, sb.ID, func(sb *standby.Sandbox) error {
			sb.State = state
			if state == standby.SandboxStopped {
				sb.StoppedAt = standby.Ptr(base())
			}
			return nil
		})
		must(t, err)
		if state == standby.SandboxStopping {
			wantCode(t, s.DeleteTemplate(ctx, w.project.ID, "echo"), standby.EConflict)
		}
	}
	must(t, s.DeleteTemplate(ctx, w.project.ID, "echo"))
	_, err = s.FindTemplate(ctx, w.project.ID, "echo")
	wantCode(t, err, standby.ENotFound)
	_, err = s.FindBuild(ctx, w.project.ID, w.build.ID)
	wantCode(t, err, standby.ENotFound)
	_, err = s.FindTag(ctx, w.project.ID, "echo", "latest")
	wantCode(t, err, standby.ENotFound)
	wantCode(t, s.DeleteTemplate(ctx, w.project.ID, "echo"), standby.ENotFound)

	// The name is free again and numbering starts over.
	newTemplate(t, s, w.project.ID, "echo", nil)
	b := newBuild(t, s, w.project.ID, "echo")
	equal(t, "number after re-create", b.Number, int64(1))
}
