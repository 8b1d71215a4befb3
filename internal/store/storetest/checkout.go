package storetest

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

type checkoutPool struct {
	state  string
	labels map[string]string
}

type checkoutInstance struct {
	pool   int
	state  string
	ready  time.Duration // ReadyAt = base()+ready
	build  int
	labels map[string]string
}

type checkoutCase struct {
	name         string
	pools        []checkoutPool // default: one enabled pool
	insts        []checkoutInstance
	reqPools     []int // default: every pool, in order
	build        int   // 0: any build, 1 or 2: that build
	selectors    []standby.Selector
	otherProject bool
	want         int // index into insts, -1: warm_pool_unavailable
}

const ready = standby.InstanceReady

// lbl returns a fresh label map of key, value pairs.
func lbl(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func sel(labels map[string]string) standby.Selector { return standby.Selector{Labels: labels} }

func testCheckout(t *testing.T, s standby.Store) {
	tests := []checkoutCase{
		{name: "empty pool", want: -1},
		{name: "nothing ready", insts: []checkoutInstance{
			{state: standby.InstanceWarming}, {state: standby.InstanceClaimed}, {state: standby.InstanceDraining}, {state: standby.InstanceFailed},
		}, want: -1},
		{name: "ready longest wins", insts: []checkoutInstance{
			{state: ready, ready: 0}, {state: ready, ready: -3 * time.Second}, {state: ready, ready: -time.Second}, {state: standby.InstanceWarming},
		}, want: 1},
		{name: "tie broken by id", insts: []checkoutInstance{
			{state: ready, ready: -time.Second}, {state: ready, ready: -time.Second}, {state: ready, ready: 0},
		}, want: 0},
		{name: "disabled pool", pools: []checkoutPool{{state: standby.PoolDisabled}}, insts: []checkoutInstance{{state: ready}}, want: -1},
		{name: "draining pool", pools: []checkoutPool{{state: standby.PoolDraining}}, insts: []checkoutInstance{{state: ready}}, want: -1},
		{name: "deleted pool", pools: []checkoutPool{{state: standby.PoolDeleted}}, insts: []checkoutInstance{{state: ready}}, want: -1},
		{name: "pool not listed", pools: []checkoutPool{{state: standby.PoolEnabled}, {state: standby.PoolEnabled}}, reqPools: []int{0},
			insts: []checkoutInstance{{pool: 1, state: ready}}, want: -1},
		{name: "ready longest across pools", pools: []checkoutPool{{state: standby.PoolEnabled}, {state: standby.PoolEnabled}},
			insts: []checkoutInstance{{pool: 0, state: ready, ready: -time.Second}, {pool: 1, state: ready, ready: -5 * time.Second}}, want: 1},
		{name: "ready longest across pools, listed in other order", pools: []checkoutPool{{state: standby.PoolEnabled}, {state: standby.PoolEnabled}}, reqPools: []int{1, 0},
			insts: []checkoutInstance{{pool: 0, state: ready, ready: -5 * time.Second}, {pool: 1, state: ready, ready: -time.Second}}, want: 0},
		{name: "disabled pool skipped", pools: []checkoutPool{{state: standby.PoolDisabled}, {state: standby.PoolEnabled}},
			insts: []checkoutInstance{{pool: 0, state: ready, ready: -5 * time.Second}, {pool: 1, state: ready, ready: -time.Second}}, want: 1},
		{name: "build filter", build: 2,
			insts: []checkoutInstance{{state: ready, ready: -5 * time.Second, build: 1}, {state: ready, ready: -time.Second, build: 2}}, want: 1},
		{name: "build filter matches nothing", build: 2, insts: []checkoutInstance{{state: ready, build: 1}}, want: -1},
		{name: "other project", otherProject: true, insts: []checkoutInstance{{state: ready}}, want: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runCheckoutCase(t, s, tt) })
	}
}

func testCheckoutSelectors(t *testing.T, s standby.Store) {
	tests := []checkoutCase{
		{name: "first selector decides even if a later one matches an older instance",
			insts:     []checkoutInstance{{state: ready, ready: -time.Second, labels: lbl("gpu", "yes")}, {state: ready, ready: -5 * time.Second, labels: lbl("gpu", "no")}},
			selectors: []standby.Selector{sel(lbl("gpu", "yes")), sel(lbl("gpu", "no"))}, want: 0},
		{name: "first selector matching nothing falls through",
			insts:     []checkoutInstance{{state: ready, ready: -time.Second, labels: lbl("gpu", "yes")}, {state: ready, ready: -5 * time.Second, labels: lbl("gpu", "no")}},
			selectors: []standby.Selector{sel(map[string]string{"gpu": "maybe"}), sel(lbl("gpu", "no")), sel(lbl("gpu", "yes"))}, want: 1},
		{name: "ready longest among matches",
			insts: []checkoutInstance{
				{state: ready, ready: -time.Second, labels: lbl("gpu", "yes")}, {state: ready, ready: -5 * time.Second, labels: lbl("gpu", "yes")},
				{state: ready, ready: -9 * time.Second}, {state: standby.InstanceWarming, labels: lbl("gpu", "yes")},
			},
			selectors: []standby.Selector{sel(lbl("gpu", "yes"))}, want: 1},
		{name: "selector with two labels",
			insts: []checkoutInstance{
				{state: ready, ready: -9 * time.Second, labels: map[string]string{"gpu": "yes"}},
				{state: ready, ready: -time.Second, labels: map[string]string{"gpu": "yes", "size": "l"}},
			},
			selectors: []standby.Selector{sel(map[string]string{"gpu": "yes", "size": "l"})}, want: 1},
		{name: "pool labels match", pools: []checkoutPool{{state: standby.PoolEnabled, labels: lbl("region", "eu")}},
			insts: []checkoutInstance{{state: ready}}, selectors: []standby.Selector{sel(lbl("region", "eu"))}, want: 0},
		{name: "instance label overrides pool label", pools: []checkoutPool{{state: standby.PoolEnabled, labels: lbl("region", "eu")}},
			insts:     []checkoutInstance{{state: ready, ready: -5 * time.Second, labels: map[string]string{"region": "us"}}, {state: ready, ready: -time.Second}},
			selectors: []standby.Selector{sel(lbl("region", "eu"))}, want: 1},
		{name: "instance label overriding pool label is matched", pools: []checkoutPool{{state: standby.PoolEnabled, labels: lbl("region", "eu")}},
			insts:     []checkoutInstance{{state: ready, ready: -time.Second, labels: map[string]string{"region": "us"}}, {state: ready, ready: -5 * time.Second}},
			selectors: []standby.Selector{sel(map[string]string{"region": "us"})}, want: 0},
		{name: "pool and instance labels combine", pools: []checkoutPool{{state: standby.PoolEnabled, labels: lbl("region", "eu")}},
			insts:     []checkoutInstance{{state: ready, ready: -5 * time.Second}, {state: ready, ready: -time.Second, labels: lbl("gpu", "yes")}},
			selectors: []standby.Selector{sel(map[string]string{"region": "eu", "gpu": "yes"})}, want: 1},
		{name: "selector by pool label across pools",
			pools:     []checkoutPool{{state: standby.PoolEnabled, labels: map[string]string{"zone": "a"}}, {state: standby.PoolEnabled, labels: map[string]string{"zone": "b"}}},
			insts:     []checkoutInstance{{pool: 0, state: ready, ready: -5 * time.Second}, {pool: 1, state: ready, ready: -time.Second}},
			selectors: []standby.Selector{sel(map[string]string{"zone": "b"})}, want: 1},
		{name: "matching instance in disabled pool is skipped",
			pools:     []checkoutPool{{state: standby.PoolDisabled}, {state: standby.PoolEnabled}},
			insts:     []checkoutInstance{{pool: 0, state: ready, labels: lbl("gpu", "yes")}, {pool: 1, state: ready, labels: lbl("gpu", "no")}},
			selectors: []standby.Selector{sel(lbl("gpu", "yes")), sel(lbl("gpu", "no"))}, want: 1},
		{name: "empty value matches empty label", insts: []checkoutInstance{{state: ready, labels: map[string]string{"x": ""}}},
			selectors: []standby.Selector{sel(map[string]string{"x": ""})}, want: 0},
		{name: "empty value does not match a missing label", insts: []checkoutInstance{{state: ready}},
			selectors: []standby.Selector{sel(map[string]string{"x": ""})}, want: -1},
		{name: "empty selector matches everything", insts: []checkoutInstance{{state: ready, ready: -time.Second}, {state: ready, ready: -2 * time.Second, labels: lbl("gpu", "no")}},
			selectors: []standby.Selector{sel(nil)}, want: 1},
		{name: "no selector matches",
			insts:     []checkoutInstance{{state: ready, labels: lbl("gpu", "yes")}, {state: ready, labels: lbl("gpu", "no")}},
			selectors: []standby.Selector{sel(map[string]string{"gpu": "maybe"}), sel(lbl("region", "eu"))}, want: -1},
		{name: "selectors and build filter", build: 2,
			insts:     []checkoutInstance{{state: ready, ready: -5 * time.Second, build: 1, labels: lbl("gpu", "yes")}, {state: ready, build: 2, labels: lbl("gpu", "no")}},
			selectors: []standby.Selector{sel(lbl("gpu", "yes")), sel(lbl("gpu", "no"))}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runCheckoutCase(t, s, tt) })
	}
}

// runCheckoutCase builds the case in a project of its own, checks out once
// and checks the outcome, including that a failed checkout changes nothing.
func runCheckoutCase(t *testing.T, s standby.Store, tt checkoutCase) {
	t.Helper()
	ctx := ctxOf(t)
	p := newProject(t, s, "co-"+standby.NewSecret(8))
	newTemplate(t, s, p.ID, "echo", nil)
	builds := []*standby.Build{newBuild(t, s, p.ID, "echo"), newBuild(t, s, p.ID, "echo")}
	pools := tt.pools
	if pools == nil {
		pools = []checkoutPool{{state: standby.PoolEnabled}}
	}
	var created []*standby.WarmPool
	for i, cp := range pools {
		created = append(created, newPool(t, s, p.ID, builds[0], name("pool", i), func(wp *standby.WarmPool) {
			wp.State, wp.Labels = cp.state, cp.labels
		}))
	}
	// Instance ids in index order; created in reverse so that creation
	// order and id order differ.
	instIDs := ids(standby.PrefixInstance, len(tt.insts))
	t0 := base() // one instant, so equal offsets tie exactly
	insts := make([]*standby.Instance, len(tt.insts))
	for j := len(tt.insts) - 1; j >= 0; j-- {
		ci := tt.insts[j]
		b := builds[0]
		if ci.build == 2 {
			b = builds[1]
		}
		insts[j] = newInstance(t, s, p.ID, created[ci.pool], b.ID, ci.state, ci.ready, func(i *standby.Instance) {
			i.ID = instIDs[j]
			if i.ReadyAt != nil {
				i.ReadyAt = standby.Ptr(t0.Add(ci.ready))
			}
			if ci.labels != nil {
				i.Labels = ci.labels
			}
			if ci.state == standby.InstanceClaimed {
				i.SandboxID = standby.Ptr(standby.NewID(standby.PrefixSandbox))
			}
		})
	}
	req := standby.CheckoutRequest{ProjectID: p.ID, Selectors: tt.selectors, Sandbox: sandboxOf(p.ID, "echo"), Now: base()}
	if tt.otherProject {
		req.ProjectID = newProject(t, s, "other-"+standby.NewSecret(8)).ID
		req.Sandbox.ProjectID = req.ProjectID
	}
	if tt.reqPools == nil {
		for _, wp := range created {
			req.PoolIDs = append(req.PoolIDs, wp.ID)
		}
	} else {
		for _, i := range tt.reqPools {
			req.PoolIDs = append(req.PoolIDs, created[i].ID)
		}
	}
	switch tt.build {
	case 1:
		req.BuildID = builds[0].ID
	case 2:
		req.BuildID = builds[1].ID
	}
	sbID := req.Sandbox.ID

	sb, err := s.Checkout(ctx, req)
	if tt.want < 0 {
		wantCode(t, err, standby.EWarmPoolUnavailable)
		_, err := s.FindSandbox(ctx, sbID)
		wantCode(t, err, standby.ENotFound)
	} else {
		must(t, err)
		want := insts[tt.want]
		if sb.InstanceID != want.ID {
			got := slices.IndexFunc(insts, func(i *standby.Instance) bool { return i.ID == sb.InstanceID })
			t.Fatalf("checked out instance %d (%s), want %d (%s)", got, sb.InstanceID, tt.want, want.ID)
		}
	}
	for j, before := range insts {
		got, err := s.FindInstance(ctx, before.ID)
		must(t, err)
		if j == tt.want {
			before.State, before.SandboxID = standby.InstanceClaimed, &sbID
		}
		equal(t, "instance "+name("inst", j), got, before)
	}
}

func testCheckoutFills(t *testing.T, s standby.Store) {
	ctx := ctxOf(t)
	w := newWorld(t, s)
	inst := newInstance(t, s, w.project.ID, w.pool, w.build.ID, standby.InstanceReady, 0, func(i *standby.Instance) {
		i.HostID, i.Address, i.Ports = "host_two", "10.0.0.7", map[string]int{"http": 41234, "admin": 41235}
		i.Labels = lbl("gpu", "yes")
	})
	tests := []struct {
		name string
		edit func(*standby.Sandbox)
	}{
		{"unset maps and metadata", func(sb *standby.Sandbox) {}},
		{"labels, annotations and metadata", func(sb *standby.Sandbox) {
			sb.Labels = map[string]string{"user": "u1"}
			sb.Annotations = map[string]string{"note": "hello world"}
			sb.Metadata = json.RawMessage(`{"payload": {"z": 1, "a": [true]}}`)
		}},
	}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n > 0 {
				inst = newInstance(t, s, w.project.ID, w.pool, w.build.ID, standby.InstanceReady, 0, func(i *standby.Instance) {
					i.HostID, i.Address, i.Ports = "host_two", "10.0.0.7", map[string]int{"http": 41234, "admin": 41235}
				})
			}
			req := sandboxOf(w.project.ID, "echo")
			tt.edit(req)
			want := *req
			sb, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: w.project.ID, PoolIDs: []string{w.pool.ID},
				BuildID: w.build.ID, Sandbox: req, Now: base()})
			must(t, err)
			want.InstanceID, want.HostID, want.Address, want.Ports = inst.ID, "host_two", "10.0.0.7", map[string]int{"http": 41234, "admin": 41235}
			want.TemplateBuildID, want.Version = w.build.ID, 1
			want.WarmPoolCheckout.ID, want.WarmPoolCheckout.Hit = w.pool.ID, true
			if want.Labels == nil {
				want.Labels = map[string]string{}
			}
			if want.Annotations == nil {
				want.Annotations = map[string]string{}
			}
			if want.Metadata == nil {
				want.Metadata = json.RawMessage("{}")
			}
			equal(t, "returned sandbox", sb, &want)
			got, err := s.FindSandbox(ctx, sb.ID)
			must(t, err)
			equal(t, "stored sandbox", got, &want)
			gotInst, err := s.FindInstance(ctx, inst.ID)
			must(t, err)
			equal(t, "instance state", gotInst.State, standby.InstanceClaimed)
			equal(t, "instance sandbox", gotInst.SandboxID, &sb.ID)
		})
	}
	// The pool is empty now.
	_, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: w.project.ID, PoolIDs: []string{w.pool.ID}, Sandbox: sandboxOf(w.project.ID, "echo"), Now: base()})
	wantCode(t, err, standby.EWarmPoolUnavailable)
}

// testCheckoutConcurrent: many goroutines against N ready instances yield
// exactly N sandboxes on N distinct instances; everyone else is told
// warm_pool_unavailable.
func testCheckoutConcurrent(t *testing.T, s standby.Store) {
	const workers = 64
	tests := []struct {
		name  string
		pools int
	}{
		{"one pool", 1},
		{"two pools", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxOf(t)
			w := newWorld(t, s)
			pools := []*standby.WarmPool{w.pool}
			if tt.pools == 2 {
				pools = append(pools, newPool(t, s, w.project.ID, w.build, "pool-b", nil))
			}
			n := 50
			for i := range n {
				newInstance(t, s, w.project.ID, pools[i%len(pools)], w.build.ID, standby.InstanceReady, time.Duration(i)*time.Millisecond, nil)
			}
			var (
				mu        sync.Mutex
				instances = map[string]string{} // instance -> sandbox
				failures  int
				wg        sync.WaitGroup
				start     = make(chan struct{})
			)
			for g := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					poolIDs := []string{}
					for k := range pools {
						poolIDs = append(poolIDs, pools[(g+k)%len(pools)].ID)
					}
					<-start
					sb, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: w.project.ID, PoolIDs: poolIDs,
						Sandbox: sandboxOf(w.project.ID, "echo"), Now: base()})
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						if prev, dup := instances[sb.InstanceID]; dup {
							t.Errorf("instance %s handed out twice: %s and %s", sb.InstanceID, prev, sb.ID)
						}
						instances[sb.InstanceID] = sb.ID
					case standby.IsCode(err, standby.EWarmPoolUnavailable):
						failures++
					default:
						t.Errorf("checkout: %v", err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if len(instances) != n || failures != workers-n {
				t.Fatalf("%d checkouts on distinct instances and %d unavailable, want %d and %d", len(instances), failures, n, workers-n)
			}
			for instID, sbID := range instances {
				inst, err := s.FindInstance(ctx, instID)
				must(t, err)
				if inst.State != standby.InstanceClaimed || inst.SandboxID == nil || *inst.SandboxID != sbID {
					t.Fatalf("instance %s: state %s sandbox %v, want claimed by %s", instID, inst.State, inst.SandboxID, sbID)
				}
				sb, err := s.FindSandbox(ctx, sbID)
				must(t, err)
				equal(t, "sandbox instance", sb.InstanceID, instID)
			}
			all := listAll(t, 1000, func(pg standby.Page) ([]*standby.Sandbox, string, error) {
				return s.FindSandboxes(ctx, standby.SandboxFilter{ProjectID: w.project.ID, Page: pg})
			})
			equal(t, "stored sandboxes", len(all), n)
			for _, p := range pools {
				got, err := s.FindWarmPool(ctx, p.ID)
				must(t, err)
				equal(t, "pool status", got.Status, standby.WarmPoolStatus{Claimed: n / len(pools)})
			}
		})
	}
}
