package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// coldSandbox stores a cold-started sandbox through CreateSandbox.
func coldSandbox(t *testing.T, s standby.Store, w world, edit func(*standby.Sandbox)) *standby.Sandbox {
	t.Helper()
	inst := newInstance(t, s, w.project.ID, nil, w.build.ID, standby.InstanceReady, 0, nil)
	sb := sandboxOf(w.project.ID, "echo")
	sb.InstanceID, sb.HostID, sb.Address, sb.Ports, sb.TemplateBuildID = inst.ID, inst.HostID, inst.Address, inst.Ports, w.build.ID
	sb.WarmPoolCheckout = standby.WarmPoolCheckout{Source: standby.SourceCold, Mode: standby.ModePrefer}
	if edit != nil {
		edit(sb)
	}
	must(t, s.CreateSandbox(t.Context(), sb))
	return sb
}

func testCreateSandbox(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	tests := []struct {
		name  string
		state string
		code  string
	}{
		{"warming", standby.InstanceWarming, ""},
		{"ready", standby.InstanceReady, ""},
		{"claimed", standby.InstanceClaimed, standby.EConflict},
		{"draining", standby.InstanceDraining, standby.EConflict},
		{"failed", standby.InstanceFailed, standby.EConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := newInstance(t, s, w.project.ID, nil, w.build.ID, tt.state, 0, nil)
			sb := sandboxOf(w.project.ID, "echo")
			sb.InstanceID, sb.HostID, sb.Address, sb.Ports, sb.TemplateBuildID = inst.ID, inst.HostID, inst.Address, inst.Ports, w.build.ID
			sb.WarmPoolCheckout = standby.WarmPoolCheckout{Source: standby.SourceCold, Mode: standby.ModePrefer}
			err := s.CreateSandbox(ctx, sb)
			got, ferr := s.FindInstance(ctx, inst.ID)
			must(t, ferr)
			if tt.code != "" {
				wantCode(t, err, tt.code)
				_, err := s.FindSandbox(ctx, sb.ID)
				wantCode(t, err, standby.ENotFound)
				equal(t, "instance unchanged", got, inst)
				return
			}
			must(t, err)
			equal(t, "version", sb.Version, int64(1))
			stored, err := s.FindSandbox(ctx, sb.ID)
			must(t, err)
			equal(t, "stored sandbox", stored, sb)
			equal(t, "instance claimed", got.State, standby.InstanceClaimed)
			equal(t, "instance sandbox id", got.SandboxID, &sb.ID)
			// The instance is taken now.
			again := sandboxOf(w.project.ID, "echo")
			again.InstanceID = inst.ID
			wantCode(t, s.CreateSandbox(ctx, again), standby.EConflict)
		})
	}
	missing := sandboxOf(w.project.ID, "echo")
	missing.InstanceID = standby.NewID(standby.PrefixInstance)
	wantCode(t, s.CreateSandbox(ctx, missing), standby.ENotFound)
}

func testSandboxes(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	sb := coldSandbox(t, s, w, func(sb *standby.Sandbox) {
		sb.Labels = map[string]string{"a": "1"}
		sb.Metadata = json.RawMessage(`{"k": ["v", 2]}`)
	})
	stopped := base().Add(time.Second)
	for v := int64(2); v <= 4; v++ {
		upd, err := s.UpdateSandbox(ctx, sb.ID, func(x *standby.Sandbox) error {
			switch v {
			case 2:
				x.Labels["b"] = "2"
				x.Annotations = map[string]string{"n": "note"}
				x.ExpiresAt = x.ExpiresAt.Add(time.Minute)
			case 3:
				x.State = standby.SandboxStopping
			case 4:
				x.State, x.StoppedAt, x.Error = standby.SandboxFailed, &stopped, standby.Ptr("exited with status 1")
			}
			return nil
		})
		must(t, err)
		equal(t, "version", upd.Version, v)
		got, err := s.FindSandbox(ctx, sb.ID)
		must(t, err)
		equal(t, "stored after update", got, upd)
	}
	got, err := s.FindSandbox(ctx, sb.ID)
	must(t, err)
	equal(t, "labels", got.Labels, map[string]string{"a": "1", "b": "2"})
	equal(t, "metadata verbatim", string(got.Metadata), `{"k": ["v", 2]}`)
	equal(t, "stopped_at", got.StoppedAt, &stopped)
	equal(t, "error", *got.Error, "exited with status 1")
}

func testSandboxFilters(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	newTemplate(t, s, w.project.ID, "base", nil)
	other := newProject(t, s, "other")
	now := base()
	sbIDs := ids(standby.PrefixSandbox, 6)
	specs := []struct {
		template, state, pool string
		labels                map[string]string
		expires               time.Duration
		project               string
	}{
		{"echo", standby.SandboxRunning, w.pool.ID, map[string]string{"team": "a"}, -time.Minute, ""},
		{"echo", standby.SandboxRunning, "", map[string]string{"team": "b"}, time.Hour, ""},
		{"base", standby.SandboxStopped, w.pool.ID, map[string]string{"team": "a", "x": "y"}, -time.Hour, ""},
		{"base", standby.SandboxExpired, "", nil, -time.Hour, ""},
		{"echo", standby.SandboxStopping, w.pool.ID, nil, -time.Hour, ""},
		{"echo", standby.SandboxRunning, "", map[string]string{"team": "a"}, -time.Minute, other.ID},
	}
	for i, sp := range specs {
		coldSandbox(t, s, w, func(sb *standby.Sandbox) {
			sb.ID, sb.Template, sb.State, sb.Labels, sb.ExpiresAt = sbIDs[i], sp.template, sp.state, sp.labels, now.Add(sp.expires)
			if sp.pool != "" {
				sb.WarmPoolCheckout = standby.WarmPoolCheckout{Source: standby.SourceWarmPool, Hit: true, ID: sp.pool, Mode: standby.ModeRequire}
			}
			if sp.project != "" {
				sb.ProjectID = sp.project
			}
			if sb.State != standby.SandboxRunning && sb.State != standby.SandboxStopping {
				sb.StoppedAt = &now
			}
		})
	}
	pick := func(i ...int) []string {
		out := []string{}
		for _, j := range i {
			out = append(out, sbIDs[j])
		}
		return out
	}
	tests := []struct {
		name string
		f    standby.SandboxFilter
		want []string
	}{
		{"project", standby.SandboxFilter{ProjectID: w.project.ID}, pick(0, 1, 2, 3, 4)},
		{"every project", standby.SandboxFilter{}, pick(0, 1, 2, 3, 4, 5)},
		{"states", standby.SandboxFilter{ProjectID: w.project.ID, States: []string{standby.SandboxRunning, standby.SandboxStopping}}, pick(0, 1, 4)},
		{"template", standby.SandboxFilter{ProjectID: w.project.ID, Template: "base"}, pick(2, 3)},
		{"warm pool", standby.SandboxFilter{WarmPoolID: w.pool.ID}, pick(0, 2, 4)},
		{"label", standby.SandboxFilter{ProjectID: w.project.ID, Labels: map[string]string{"team": "a"}}, pick(0, 2)},
		{"labels", standby.SandboxFilter{Labels: map[string]string{"team": "a", "x": "y"}}, pick(2)},
		{"expires before: running only", standby.SandboxFilter{ExpiresBefore: &now}, pick(0, 5)},
		{"expires before in project", standby.SandboxFilter{ProjectID: w.project.ID, ExpiresBefore: &now}, pick(0)},
		{"combined", standby.SandboxFilter{ProjectID: w.project.ID, Template: "echo", WarmPoolID: w.pool.ID, States: []string{standby.SandboxStopping}}, pick(4)},
		{"nothing", standby.SandboxFilter{Template: "nope"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 2, 100} {
				got := listAll(t, size, func(pg standby.Page) ([]*standby.Sandbox, string, error) {
					f := tt.f
					f.Page = pg
					return s.FindSandboxes(ctx, f)
				})
				equal(t, "sandbox ids", idsOf(got, func(sb *standby.Sandbox) string { return sb.ID }), tt.want)
			}
		})
	}
}

func testHosts(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	hosts, err := s.FindHosts(ctx)
	must(t, err)
	if hosts == nil || len(hosts) != 0 {
		t.Fatalf("hosts of an empty store: %#v", hosts)
	}
	h1 := &standby.Host{ID: standby.NewID(standby.PrefixHost), Name: "one", State: standby.HostUp, HostPoolID: "default", CellID: "c1",
		Address: "127.0.0.1", Isolation: "none", Capacity: standby.Resources{VCPUs: 2, MemoryMB: 4096, DiskMB: 10000}, MaxInstances: 100,
		LastHeartbeatAt: base(), CreatedAt: base()}
	h2 := &standby.Host{ID: standby.NewID(standby.PrefixHost), Name: "two", State: standby.HostUp, LastHeartbeatAt: base(), CreatedAt: base()}
	must(t, s.UpsertHost(ctx, h1))
	must(t, s.UpsertHost(ctx, h2))
	got, err := s.FindHost(ctx, h1.ID)
	must(t, err)
	equal(t, "host", got, h1)

	h1b := *h1
	h1b.State, h1b.LastHeartbeatAt, h1b.MaxInstances = standby.HostDraining, base().Add(time.Second), 50
	must(t, s.UpsertHost(ctx, &h1b))
	got, err = s.FindHost(ctx, h1.ID)
	must(t, err)
	equal(t, "replaced host", got, &h1b)

	hosts, err = s.FindHosts(ctx)
	must(t, err)
	slices.SortFunc(hosts, func(a, b *standby.Host) int { return cmpString(a.ID, b.ID) })
	want := []*standby.Host{&h1b, h2}
	slices.SortFunc(want, func(a, b *standby.Host) int { return cmpString(a.ID, b.ID) })
	equal(t, "hosts", hosts, want)
}

func testIdempotency(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	now := base()
	rec := &standby.IdempotencyRecord{Scope: "key_1", Key: "k1", RequestHash: "h1", CreatedAt: now}
	got, err := s.ReserveIdempotencyKey(ctx, rec)
	must(t, err)
	if got != nil {
		t.Fatalf("first reserve returned %+v, want nil", got)
	}
	got, err = s.ReserveIdempotencyKey(ctx, &standby.IdempotencyRecord{Scope: "key_1", Key: "k1", RequestHash: "h2", CreatedAt: now.Add(time.Second)})
	must(t, err)
	if got == nil || got.Status != 0 || got.RequestHash != "h1" || !got.CreatedAt.Equal(now) {
		t.Fatalf("second reserve returned %+v, want the in-progress record", got)
	}
	// Same key in another scope is independent.
	got, err = s.ReserveIdempotencyKey(ctx, &standby.IdempotencyRecord{Scope: "key_2", Key: "k1", RequestHash: "h3", CreatedAt: now})
	must(t, err)
	if got != nil {
		t.Fatalf("reserve in another scope returned %+v", got)
	}

	done := &standby.IdempotencyRecord{Scope: "key_1", Key: "k1", RequestHash: "h1", Status: 201,
		Body: []byte(`{"id":"sb_1"}`), Headers: map[string]string{"Location": "/v1/sandboxes/sb_1"}, CreatedAt: now}
	must(t, s.CompleteIdempotencyKey(ctx, done))
	got, err = s.ReserveIdempotencyKey(ctx, &standby.IdempotencyRecord{Scope: "key_1", Key: "k1", RequestHash: "h1", CreatedAt: now})
	must(t, err)
	equal(t, "completed record", got, done)

	// A released key runs again.
	must(t, s.ReleaseIdempotencyKey(ctx, "key_2", "k1"))
	got, err = s.ReserveIdempotencyKey(ctx, &standby.IdempotencyRecord{Scope: "key_2", Key: "k1", RequestHash: "h4", CreatedAt: now.Add(2 * time.Hour)})
	must(t, err)
	if got != nil {
		t.Fatalf("reserve after release returned %+v", got)
	}
	// An in-progress record has empty headers, not nil.
	got, err = s.ReserveIdempotencyKey(ctx, &standby.IdempotencyRecord{Scope: "key_2", Key: "k1", RequestHash: "h4", CreatedAt: now})
	must(t, err)
	if got == nil || got.Headers == nil || got.RequestHash != "h4" {
		t.Fatalf("in-progress record %+v", got)
	}

	n, err := s.DeleteIdempotencyKeys(ctx, now.Add(time.Hour))
	must(t, err)
	equal(t, "deleted", n, 1) // key_1/k1; key_2/k1 was made later
	got, err = s.ReserveIdempotencyKey(ctx, &standby.IdempotencyRecord{Scope: "key_1", Key: "k1", RequestHash: "h9", CreatedAt: now})
	must(t, err)
	if got != nil {
		t.Fatalf("reserve after delete returned %+v", got)
	}
}

// testUpdateAborts: an error from an Update* function is returned as is
// and changes nothing.
func testUpdateAborts(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	inst := newInstance(t, s, w.project.ID, w.pool, w.build.ID, standby.InstanceReady, 0, nil)
	sb := coldSandbox(t, s, w, nil)
	tests := []struct {
		name   string
		update func() error
		find   func() (any, error)
	}{
		{"project", func() error {
			_, err := s.UpdateProject(ctx, w.project.ID, func(p *standby.Project) error { p.Name = "changed"; return errStop })
			return err
		}, func() (any, error) { return s.FindProject(ctx, w.project.ID) }},
		{"warm pool", func() error {
			_, err := s.UpdateWarmPool(ctx, w.pool.ID, func(p *standby.WarmPool) error { p.MinReady = 99; p.Labels["x"] = "y"; return errStop })
			return err
		}, func() (any, error) { return s.FindWarmPool(ctx, w.pool.ID) }},
		{"instance", func() error {
			_, err := s.UpdateInstance(ctx, inst.ID, func(i *standby.Instance) error { i.State = standby.InstanceFailed; return errStop })
			return err
		}, func() (any, error) { return s.FindInstance(ctx, inst.ID) }},
		{"sandbox", func() error {
			_, err := s.UpdateSandbox(ctx, sb.ID, func(sb *standby.Sandbox) error { sb.State = standby.SandboxStopped; return errStop })
			return err
		}, func() (any, error) { return s.FindSandbox(ctx, sb.ID) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := tt.find()
			must(t, err)
			if err := tt.update(); !errors.Is(err, errStop) {
				t.Fatalf("update returned %v, want the function's error", err)
			}
			after, err := tt.find()
			must(t, err)
			equal(t, "record after aborted update", after, before)
		})
	}
}

func testNotFound(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	pid := w.project.ID
	unknown := func(prefix string) string { return standby.NewID(prefix) }
	called := false
	tests := []struct {
		name string
		call func() error
	}{
		{"FindProject", func() error { _, err := s.FindProject(ctx, unknown(standby.PrefixProject)); return err }},
		{"FindProjectByName", func() error { _, err := s.FindProjectByName(ctx, "nope"); return err }},
		{"UpdateProject", func() error {
			_, err := s.UpdateProject(ctx, unknown(standby.PrefixProject), func(*standby.Project) error { called = true; return nil })
			return err
		}},
		{"FindAPIKey", func() error { _, err := s.FindAPIKey(ctx, unknown(standby.PrefixAPIKey)); return err }},
		{"FindAPIKeyByHash", func() error { _, err := s.FindAPIKeyByHash(ctx, "nope"); return err }},
		{"RevokeAPIKey", func() error { return s.RevokeAPIKey(ctx, unknown(standby.PrefixAPIKey), base()) }},
		{"FindTemplate", func() error { _, err := s.FindTemplate(ctx, pid, "nope"); return err }},
		{"FindTemplate of another project", func() error { _, err := s.FindTemplate(ctx, unknown(standby.PrefixProject), "echo"); return err }},
		{"DeleteTemplate", func() error { return s.DeleteTemplate(ctx, pid, "nope") }},
		{"CreateBuild", func() error { return s.CreateBuild(ctx, buildOf(pid, "nope")) }},
		{"FindBuild", func() error { _, err := s.FindBuild(ctx, pid, unknown(standby.PrefixBuild)); return err }},
		{"FindBuilds", func() error {
			_, _, err := s.FindBuilds(ctx, standby.BuildFilter{ProjectID: pid, Template: "nope"})
			return err
		}},
		{"FindTag", func() error { _, err := s.FindTag(ctx, pid, "echo", "nope"); return err }},
		{"SetTag", func() error { return s.SetTag(ctx, pid, "echo", "x", unknown(standby.PrefixBuild)) }},
		{"FindWarmPool", func() error { _, err := s.FindWarmPool(ctx, unknown(standby.PrefixWarmPool)); return err }},
		{"UpdateWarmPool", func() error {
			_, err := s.UpdateWarmPool(ctx, unknown(standby.PrefixWarmPool), func(*standby.WarmPool) error { called = true; return nil })
			return err
		}},
		{"SetWarmPoolStatus", func() error {
			return s.SetWarmPoolStatus(ctx, unknown(standby.PrefixWarmPool), standby.WarmPoolControllerStatus{})
		}},
		{"FindInstance", func() error { _, err := s.FindInstance(ctx, unknown(standby.PrefixInstance)); return err }},
		{"UpdateInstance", func() error {
			_, err := s.UpdateInstance(ctx, unknown(standby.PrefixInstance), func(*standby.Instance) error { called = true; return nil })
			return err
		}},
		{"DeleteInstance", func() error { return s.DeleteInstance(ctx, unknown(standby.PrefixInstance)) }},
		{"FindSandbox", func() error { _, err := s.FindSandbox(ctx, unknown(standby.PrefixSandbox)); return err }},
		{"UpdateSandbox", func() error {
			_, err := s.UpdateSandbox(ctx, unknown(standby.PrefixSandbox), func(*standby.Sandbox) error { called = true; return nil })
			return err
		}},
		{"FindHost", func() error { _, err := s.FindHost(ctx, unknown(standby.PrefixHost)); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called = false
			wantCode(t, tt.call(), standby.ENotFound)
			if called {
				t.Fatalf("update function called for a missing record")
			}
		})
	}
}

func testBadPageToken(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	newProject(t, s, "second")
	newBuild(t, s, w.project.ID, "echo")
	_, projectToken, err := s.FindProjects(ctx, standby.ProjectFilter{Page: standby.Page{Size: 1}})
	must(t, err)
	_, buildToken, err := s.FindBuilds(ctx, standby.BuildFilter{ProjectID: w.project.ID, Template: "echo", Page: standby.Page{Size: 1}})
	must(t, err)
	if projectToken == "" || buildToken == "" {
		t.Fatalf("no next page token: %q %q", projectToken, buildToken)
	}
	lists := []struct {
		name  string
		list  func(token string) error
		valid string
	}{
		{"projects", func(tok string) error {
			_, _, err := s.FindProjects(ctx, standby.ProjectFilter{Page: standby.Page{Token: tok}})
			return err
		}, projectToken},
		{"api keys", func(tok string) error {
			_, _, err := s.FindAPIKeys(ctx, standby.APIKeyFilter{ProjectID: w.project.ID, Page: standby.Page{Token: tok}})
			return err
		}, ""},
		{"templates", func(tok string) error {
			_, _, err := s.FindTemplates(ctx, standby.TemplateFilter{ProjectID: w.project.ID, Page: standby.Page{Token: tok}})
			return err
		}, ""},
		{"builds", func(tok string) error {
			_, _, err := s.FindBuilds(ctx, standby.BuildFilter{ProjectID: w.project.ID, Template: "echo", Page: standby.Page{Token: tok}})
			return err
		}, buildToken},
		{"warm pools", func(tok string) error {
			_, _, err := s.FindWarmPools(ctx, standby.WarmPoolFilter{Page: standby.Page{Token: tok}})
			return err
		}, ""},
		{"instances", func(tok string) error {
			_, _, err := s.FindInstances(ctx, standby.InstanceFilter{Page: standby.Page{Token: tok}})
			return err
		}, ""},
		{"sandboxes", func(tok string) error {
			_, _, err := s.FindSandboxes(ctx, standby.SandboxFilter{Page: standby.Page{Token: tok}})
			return err
		}, ""},
	}
	for _, l := range lists {
		t.Run(l.name, func(t *testing.T) {
			for _, tok := range []string{"%%%", "not a token", "AAAA"} {
				wantCode(t, l.list(tok), standby.EBadRequest)
			}
			if l.valid != "" {
				must(t, l.list(l.valid))
			}
			// A token of another list is unknown here.
			foreign := projectToken
			if l.valid == projectToken {
				foreign = buildToken
			}
			wantCode(t, l.list(foreign), standby.EBadRequest)
		})
	}
}
