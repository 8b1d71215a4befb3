package storetest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

func testWarmPools(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	now := base()
	p := poolOf(w.project.ID, w.build, "full")
	p.Labels = map[string]string{"region": "eu", "empty": ""}
	p.Metadata = json.RawMessage(`{"b": [1, 2], "a": {"x": null}}`)
	p.HostPoolID, p.CellID, p.TrackTag = standby.Ptr("hp1"), standby.Ptr("cell-1"), standby.Ptr("stable")
	p.VersionPolicy, p.CheckoutPolicy = standby.PolicyTrackTag, standby.ModeRequire
	p.DisabledAt, p.DrainRequestedAt = standby.Ptr(now.Add(-time.Hour)), standby.Ptr(now.Add(-2*time.Hour))
	p.RolloutStatus = standby.RolloutStatus{Phase: standby.RolloutComplete, CurrentCounts: map[string]int{w.build.ID: 2}}
	p.DegradedReason = standby.Ptr(standby.DegradedNoEligibleHosts)
	must(t, s.CreateWarmPool(ctx, p))
	equal(t, "version", p.Version, int64(1))
	got, err := s.FindWarmPool(ctx, p.ID)
	must(t, err)
	equal(t, "pool round trip", got, p)

	// A pool with every optional field unset comes back with empty maps
	// and {} metadata.
	bare := poolOf(w.project.ID, w.build, "bare")
	bare.Labels, bare.Metadata, bare.EnabledAt = nil, nil, nil
	must(t, s.CreateWarmPool(ctx, bare))
	got, err = s.FindWarmPool(ctx, bare.ID)
	must(t, err)
	if got.Labels == nil || got.RolloutStatus.CurrentCounts == nil || string(got.Metadata) != "{}" {
		t.Fatalf("unset fields: labels %#v counts %#v metadata %q", got.Labels, got.RolloutStatus.CurrentCounts, got.Metadata)
	}
	if got.EnabledAt != nil || got.DegradedReason != nil || got.LastReconciledAt != nil {
		t.Fatalf("nil pointers came back set: %+v", got)
	}

	later := now.Add(time.Second)
	b2 := newBuild(t, s, w.project.ID, "echo")
	upd, err := s.UpdateWarmPool(ctx, p.ID, func(p *standby.WarmPool) error {
		p.MinReady, p.MaxReady = 5, 9
		p.Labels = map[string]string{"region": "us"}
		p.SetResolvedBuild(b2)
		p.UpdatedAt = later
		return nil
	})
	must(t, err)
	equal(t, "version after update", upd.Version, int64(2))
	equal(t, "rollout generation", upd.RolloutGeneration, p.RolloutGeneration+1)
	got, err = s.FindWarmPool(ctx, p.ID)
	must(t, err)
	equal(t, "updated pool", got, upd)
	equal(t, "updated_at set by fn", got.UpdatedAt, later)
	equal(t, "previous build", *got.PreviousResolvedTemplateBuildID, w.build.ID)

	upd, err = s.UpdateWarmPool(ctx, p.ID, func(p *standby.WarmPool) error { p.State = standby.PoolDisabled; return nil })
	must(t, err)
	equal(t, "version after second update", upd.Version, int64(3))
	equal(t, "updated_at left alone", upd.UpdatedAt, later)
	got, err = s.FindWarmPool(ctx, p.ID)
	must(t, err)
	equal(t, "pool after second update", got, upd)
}

func testWarmPoolFilters(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	other := newProject(t, s, "other")
	newTemplate(t, s, other.ID, "echo", nil)
	ob := newBuild(t, s, other.ID, "echo")

	poolIDs := ids(standby.PrefixWarmPool, 6)
	specs := []struct {
		project string
		build   *standby.Build
		state   string
		labels  map[string]string
	}{
		{w.project.ID, w.build, standby.PoolEnabled, map[string]string{"tier": "gold", "zone": "a"}},
		{w.project.ID, w.build, standby.PoolDisabled, map[string]string{"tier": "gold"}},
		{w.project.ID, w.build, standby.PoolDraining, nil},
		{w.project.ID, w.build, standby.PoolDeleted, map[string]string{"tier": "gold"}},
		{other.ID, ob, standby.PoolEnabled, map[string]string{"tier": "gold"}},
		{w.project.ID, w.build, standby.PoolEnabled, map[string]string{"zone": "a"}},
	}
	for i, sp := range specs {
		newPool(t, s, sp.project, sp.build, name("pool", i), func(p *standby.WarmPool) {
			p.ID, p.State, p.Labels = poolIDs[i], sp.state, sp.labels
		})
	}
	pid := func(i ...int) []string {
		out := []string{}
		for _, j := range i {
			out = append(out, poolIDs[j])
		}
		return out
	}
	// newWorld's pool was made before poolIDs, so it sorts first.
	tests := []struct {
		name string
		f    standby.WarmPoolFilter
		want []string
	}{
		{"project", standby.WarmPoolFilter{ProjectID: w.project.ID}, append([]string{w.pool.ID}, pid(0, 1, 2, 5)...)},
		{"project with deleted", standby.WarmPoolFilter{ProjectID: w.project.ID, IncludeDeleted: true}, append([]string{w.pool.ID}, pid(0, 1, 2, 3, 5)...)},
		{"every project", standby.WarmPoolFilter{}, append([]string{w.pool.ID}, pid(0, 1, 2, 4, 5)...)},
		{"states", standby.WarmPoolFilter{ProjectID: w.project.ID, States: []string{standby.PoolDisabled, standby.PoolDraining}}, pid(1, 2)},
		{"ids", standby.WarmPoolFilter{IDs: pid(1, 3, 4)}, pid(1, 4)},
		{"ids with deleted", standby.WarmPoolFilter{IDs: pid(1, 3, 4), IncludeDeleted: true}, pid(1, 3, 4)},
		{"label", standby.WarmPoolFilter{ProjectID: w.project.ID, Labels: map[string]string{"tier": "gold"}}, pid(0, 1)},
		{"labels", standby.WarmPoolFilter{Labels: map[string]string{"tier": "gold", "zone": "a"}}, pid(0)},
		{"no match", standby.WarmPoolFilter{Labels: map[string]string{"tier": "silver"}}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{1, 3, 100} {
				got := listAll(t, size, func(pg standby.Page) ([]*standby.WarmPool, string, error) {
					f := tt.f
					f.Page = pg
					return s.FindWarmPools(ctx, f)
				})
				equal(t, "pool ids", idsOf(got, func(p *standby.WarmPool) string { return p.ID }), tt.want)
			}
		})
	}
	got, err := s.FindWarmPool(ctx, poolIDs[3])
	must(t, err)
	equal(t, "deleted pool still found", got.State, standby.PoolDeleted)
}

func testWarmPoolStatusCounts(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	a := w.pool
	b := newPool(t, s, w.project.ID, w.build, "pool-b", nil)
	now := standby.Now()
	recent, old := now.Add(-10*time.Minute), now.Add(-2*time.Hour)
	mk := func(pool *standby.WarmPool, state string, endedAt *time.Time) {
		newInstance(t, s, w.project.ID, pool, w.build.ID, state, 0, func(i *standby.Instance) {
			i.EndedAt = endedAt
			if state == standby.InstanceClaimed {
				i.SandboxID = standby.Ptr(standby.NewID(standby.PrefixSandbox))
			}
		})
	}
	for range 3 {
		mk(a, standby.InstanceReady, nil)
	}
	mk(a, standby.InstanceWarming, nil)
	mk(a, standby.InstanceWarming, nil)
	mk(a, standby.InstanceClaimed, nil)
	mk(a, standby.InstanceDraining, &recent)
	mk(a, standby.InstanceFailed, &recent)
	mk(a, standby.InstanceFailed, &old)
	mk(b, standby.InstanceReady, nil)
	mk(b, standby.InstanceFailed, &recent)
	mk(nil, standby.InstanceReady, nil)

	// Sandboxes that came out of the pools, ended in several ways.
	ended := func(pool *standby.WarmPool, state string, stoppedAt time.Time) {
		inst := newInstance(t, s, w.project.ID, nil, w.build.ID, standby.InstanceWarming, 0, nil)
		sb := sandboxOf(w.project.ID, "echo")
		sb.InstanceID = inst.ID
		sb.WarmPoolCheckout.ID, sb.WarmPoolCheckout.Hit = pool.ID, true
		must(t, s.CreateSandbox(ctx, sb))
		_, err := s.UpdateSandbox(ctx, sb.ID, func(sb *standby.Sandbox) error {
			sb.State, sb.StoppedAt = state, &stoppedAt
			return nil
		})
		must(t, err)
		must(t, s.DeleteInstance(ctx, inst.ID))
	}
	ended(a, standby.SandboxExpired, recent)
	ended(a, standby.SandboxExpired, recent)
	ended(a, standby.SandboxExpired, old)
	ended(a, standby.SandboxStopped, recent)
	ended(a, standby.SandboxFailed, recent)
	ended(b, standby.SandboxExpired, recent)

	must(t, s.SetWarmPoolStatus(ctx, a.ID, standby.WarmPoolControllerStatus{Target: 4, Unavailable: 1, LastReconciledAt: now}))
	wantA := standby.WarmPoolStatus{Target: 4, Ready: 3, Warming: 2, Claimed: 1, Draining: 1, Failed: 1, Expired: 2, Unavailable: 1}
	wantB := standby.WarmPoolStatus{Ready: 1, Failed: 1, Expired: 1}
	got, err := s.FindWarmPool(ctx, a.ID)
	must(t, err)
	equal(t, "status of a", got.Status, wantA)
	got, err = s.FindWarmPool(ctx, b.ID)
	must(t, err)
	equal(t, "status of b", got.Status, wantB)
	list, _, err := s.FindWarmPools(ctx, standby.WarmPoolFilter{ProjectID: w.project.ID})
	must(t, err)
	equal(t, "listed pools", len(list), 2)
	for _, p := range list {
		want := map[string]standby.WarmPoolStatus{a.ID: wantA, b.ID: wantB}[p.ID]
		equal(t, "listed status of "+p.Name, p.Status, want)
	}

	// Counts follow the rows at once: a checkout moves ready to claimed.
	_, err = s.Checkout(ctx, standby.CheckoutRequest{ProjectID: w.project.ID, PoolIDs: []string{a.ID}, Sandbox: sandboxOf(w.project.ID, "echo"), Now: now})
	must(t, err)
	got, err = s.FindWarmPool(ctx, a.ID)
	must(t, err)
	wantA.Ready, wantA.Claimed = 2, 2
	equal(t, "status after checkout", got.Status, wantA)
}

func testSetWarmPoolStatus(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	now := base()
	st := standby.WarmPoolControllerStatus{
		Target: 3, Unavailable: 2,
		RolloutStatus:    standby.RolloutStatus{Phase: standby.RolloutProgressing, TargetBuildID: w.build.ID, CurrentCounts: map[string]int{w.build.ID: 1}, Message: "m"},
		DegradedReason:   standby.Ptr(standby.DegradedArtifactPrewarmFailed),
		LastReconciledAt: now,
	}
	must(t, s.SetWarmPoolStatus(ctx, w.pool.ID, st))
	got, err := s.FindWarmPool(ctx, w.pool.ID)
	must(t, err)
	want := *w.pool
	want.Status.Target, want.Status.Unavailable = 3, 2
	want.RolloutStatus, want.DegradedReason, want.LastReconciledAt = st.RolloutStatus, st.DegradedReason, &now
	equal(t, "pool with controller status", got, &want)
	equal(t, "version unchanged", got.Version, int64(1))

	// Clearing the degraded reason; an update of the spec keeps the status.
	st.DegradedReason, st.RolloutStatus = nil, standby.RolloutStatus{Phase: standby.RolloutComplete}
	must(t, s.SetWarmPoolStatus(ctx, w.pool.ID, st))
	upd, err := s.UpdateWarmPool(ctx, w.pool.ID, func(p *standby.WarmPool) error { p.MinReady = 1; return nil })
	must(t, err)
	got, err = s.FindWarmPool(ctx, w.pool.ID)
	must(t, err)
	equal(t, "pool after update", got, upd)
	if got.DegradedReason != nil || got.Status.Target != 3 || got.RolloutStatus.Phase != standby.RolloutComplete || got.RolloutStatus.CurrentCounts == nil {
		t.Fatalf("controller status lost or not cleared: %+v", got)
	}
	wantCode(t, s.SetWarmPoolStatus(ctx, standby.NewID(standby.PrefixWarmPool), st), standby.ENotFound)
}

func testInstances(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	i := instanceOf(w.project.ID, w.pool, w.build.ID, standby.InstanceWarming, 0)
	i.Labels = map[string]string{"gpu": "no"}
	i.Annotations = map[string]string{"note": "free text, with spaces"}
	i.RolloutGeneration = 7
	must(t, s.CreateInstance(ctx, i))
	got, err := s.FindInstance(ctx, i.ID)
	must(t, err)
	equal(t, "instance round trip", got, i)
	wantCode(t, s.CreateInstance(ctx, i), standby.EConflict)

	ready := base().Add(time.Second)
	upd, err := s.UpdateInstance(ctx, i.ID, func(i *standby.Instance) error {
		i.State, i.ReadyAt = standby.InstanceReady, &ready
		i.Labels["gpu"] = "yes"
		i.Ports = map[string]int{"http": 41000}
		return nil
	})
	must(t, err)
	equal(t, "updated state", upd.State, standby.InstanceReady)
	got, err = s.FindInstance(ctx, i.ID)
	must(t, err)
	equal(t, "updated instance", got, upd)

	// Bare instance: no pool, nil maps.
	bare := &standby.Instance{ID: standby.NewID(standby.PrefixInstance), ProjectID: w.project.ID, State: standby.InstanceWarming,
		TemplateBuildID: w.build.ID, CreatedAt: base()}
	must(t, s.CreateInstance(ctx, bare))
	got, err = s.FindInstance(ctx, bare.ID)
	must(t, err)
	if got.Ports == nil || got.Labels == nil || got.Annotations == nil || got.PoolID != "" || got.SandboxID != nil || got.ReadyAt != nil || got.EndedAt != nil {
		t.Fatalf("bare instance: %#v", got)
	}

	must(t, s.DeleteInstance(ctx, i.ID))
	_, err = s.FindInstance(ctx, i.ID)
	wantCode(t, err, standby.ENotFound)
	wantCode(t, s.DeleteInstance(ctx, i.ID), standby.ENotFound)
}

func testInstanceFilters(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	b := newPool(t, s, w.project.ID, w.build, "pool-b", nil)
	other := newProject(t, s, "other")
	instIDs := ids(standby.PrefixInstance, 7)
	specs := []struct {
		project string
		pool    *standby.WarmPool
		host    string
		state   string
	}{
		{w.project.ID, w.pool, "h1", standby.InstanceReady},
		{w.project.ID, w.pool, "h2", standby.InstanceWarming},
		{w.project.ID, w.pool, "h1", standby.InstanceFailed},
		{w.project.ID, b, "h2", standby.InstanceReady},
		{w.project.ID, nil, "h1", standby.InstanceClaimed},
		{other.ID, nil, "h2", standby.InstanceClaimed},
		{w.project.ID, w.pool, "h2", standby.InstanceDraining},
	}
	for i, sp := range specs {
		newInstance(t, s, sp.project, sp.pool, w.build.ID, sp.state, 0, func(inst *standby.Instance) {
			inst.ID, inst.HostID = instIDs[i], sp.host
		})
	}
	pick := func(i ...int) []string {
		out := []string{}
		for _, j := range i {
			out = append(out, instIDs[j])
		}
		return out
	}
	tests := []struct {
		name string
		f    standby.InstanceFilter
		want []string
	}{
		{"all", standby.InstanceFilter{}, pick(0, 1, 2, 3, 4, 5, 6)},
		{"project", standby.InstanceFilter{ProjectID: w.project.ID}, pick(0, 1, 2, 3, 4, 6)},
		{"pool", standby.InstanceFilter{PoolID: w.pool.ID}, pick(0, 1, 2, 6)},
		{"pool and states", standby.InstanceFilter{PoolID: w.pool.ID, States: []string{standby.InstanceReady, standby.InstanceWarming}}, pick(0, 1)},
		{"host", standby.InstanceFilter{HostID: "h1"}, pick(0, 2, 4)},
		{"no pool", standby.InstanceFilter{NoPool: true}, pick(4, 5)},
		{"no pool in project", standby.InstanceFilter{ProjectID: w.project.ID, NoPool: true}, pick(4)},
		{"states", standby.InstanceFilter{States: []string{standby.InstanceReady}}, pick(0, 3)},
		{"nothing", standby.InstanceFilter{HostID: "h9"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var full []*standby.Instance
			for _, size := range []int{1, 2, 100} {
				full = listAll(t, size, func(pg standby.Page) ([]*standby.Instance, string, error) {
					f := tt.f
					f.Page = pg
					return s.FindInstances(ctx, f)
				})
				equal(t, "instance ids", idsOf(full, func(i *standby.Instance) string { return i.ID }), tt.want)
			}
			// Brief: the same instances, with only the planning fields.
			brief := listAll(t, 2, func(pg standby.Page) ([]*standby.Instance, string, error) {
				f := tt.f
				f.Page, f.Brief = pg, true
				return s.FindInstances(ctx, f)
			})
			want := []standby.Instance{}
			for _, in := range full {
				b := *in
				b.Address, b.Ports, b.Labels, b.Annotations, b.SandboxID, b.Reason = "", nil, nil, nil, nil, ""
				want = append(want, b)
			}
			got := []standby.Instance{}
			for _, in := range brief {
				got = append(got, *in)
			}
			equal(t, "brief instances", got, want)
			f := tt.f
			f.Page = standby.Page{Size: 1} // ignored by a count
			n, err := s.CountInstances(ctx, f)
			if err != nil {
				t.Fatalf("CountInstances: %v", err)
			}
			if n != len(tt.want) {
				t.Fatalf("CountInstances = %d, want %d", n, len(tt.want))
			}
		})
	}
}

func testDeleteFailedInstances(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	now := base()
	var keep []string
	for _, c := range []struct {
		state string
		ended time.Duration
		gone  bool
	}{
		{standby.InstanceFailed, -3 * time.Hour, true},
		{standby.InstanceFailed, -2 * time.Hour, true},
		{standby.InstanceFailed, -30 * time.Minute, false},
		{standby.InstanceDraining, -3 * time.Hour, false},
		{standby.InstanceReady, 0, false},
	} {
		i := newInstance(t, s, w.project.ID, w.pool, w.build.ID, c.state, 0, func(i *standby.Instance) {
			if c.ended != 0 {
				i.EndedAt = standby.Ptr(now.Add(c.ended))
			}
		})
		if !c.gone {
			keep = append(keep, i.ID)
		}
	}
	n, err := s.DeleteFailedInstances(ctx, now.Add(-time.Hour))
	must(t, err)
	equal(t, "deleted", n, 2)
	got, _, err := s.FindInstances(ctx, standby.InstanceFilter{PoolID: w.pool.ID})
	must(t, err)
	gotIDs := idsOf(got, func(i *standby.Instance) string { return i.ID })
	slices.Sort(gotIDs)
	slices.Sort(keep)
	equal(t, "kept", gotIDs, keep)
	n, err = s.DeleteFailedInstances(ctx, now.Add(-time.Hour))
	must(t, err)
	equal(t, "deleted again", n, 0)
}
