package controller

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func testPool(minReady, maxReady int, build string) *standby.WarmPool {
	p := &standby.WarmPool{ID: "twp_1", MinReady: minReady, MaxReady: maxReady, State: standby.PoolEnabled}
	p.ApplyDefaults()
	if build != "" {
		p.ResolvedTemplateBuildID = standby.Ptr(build)
	}
	return p
}

// insts makes instances from "state:build" specs; the n-th is created n
// seconds after t0 and named i<n>.
func insts(specs ...string) []*standby.Instance {
	var out []*standby.Instance
	for n, s := range specs {
		state, build, _ := strings.Cut(s, ":")
		out = append(out, &standby.Instance{
			ID: fmt.Sprintf("i%d", n), State: state, TemplateBuildID: build,
			CreatedAt: t0.Add(time.Duration(n) * time.Second), PoolID: "twp_1",
		})
	}
	return out
}

func oneHost(free int) []planHost { return []planHost{{ID: "host_a", Free: free}} }

func okState() planState {
	return planState{BuildOK: true, Hosts: oneHost(-1), BackoffBase: time.Second, BackoffMax: 5 * time.Minute}
}

func stopIDs(r planResult) []string {
	var ids []string
	for _, s := range r.Stops {
		ids = append(ids, s.InstanceID)
	}
	sort.Strings(ids)
	return ids
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		pool     func() *standby.WarmPool
		insts    []*standby.Instance
		st       func() planState
		now      time.Time
		starts   int
		stops    []string
		target   int
		unavail  int
		degraded string
		phase    string
		requeue  bool
	}{
		{
			name: "empty pool fills to min_ready", pool: func() *standby.WarmPool { return testPool(3, 3, "b1") },
			st: okState, starts: 3, target: 3, phase: standby.RolloutComplete,
		},
		{
			name: "warming counts toward target", pool: func() *standby.WarmPool { return testPool(3, 5, "b1") },
			insts: insts("warming:b1", "ready:b1"), st: okState, starts: 1, target: 3, phase: standby.RolloutComplete,
		},
		{
			name: "claimed instances do not count and are never stopped", pool: func() *standby.WarmPool { return testPool(2, 2, "b1") },
			insts: insts("claimed:b1", "claimed:b1", "claimed:b1", "ready:b1"), st: okState, starts: 1, target: 2, phase: standby.RolloutComplete,
		},
		{
			name: "recent checkouts raise target toward max_ready", pool: func() *standby.WarmPool { return testPool(1, 3, "b1") },
			st: func() planState {
				s := okState()
				s.Checkouts = []time.Time{t0.Add(-time.Second), t0.Add(-2 * time.Second), t0.Add(-3 * time.Second), t0.Add(-time.Minute)}
				return s
			},
			starts: 3, target: 3, phase: standby.RolloutComplete,
		},
		{
			name: "old checkouts fall out of the window", pool: func() *standby.WarmPool { return testPool(1, 3, "b1") },
			st: func() planState {
				s := okState()
				s.Checkouts = []time.Time{t0.Add(-11 * time.Second)}
				return s
			},
			starts: 1, target: 1, phase: standby.RolloutComplete,
		},
		{
			name: "ready above target but within max_ready stays", pool: func() *standby.WarmPool { return testPool(1, 3, "b1") },
			insts: insts("ready:b1", "ready:b1", "ready:b1"), st: okState, target: 1, phase: standby.RolloutComplete,
		},
		{
			name: "excess above max_ready stops warming first then newest ready", pool: func() *standby.WarmPool { return testPool(1, 2, "b1") },
			insts: insts("ready:b1", "ready:b1", "ready:b1", "warming:b1"), st: okState,
			stops: []string{"i2", "i3"}, target: 1, phase: standby.RolloutComplete,
		},
		{
			name: "disabled stops ready and warming, not claimed", pool: func() *standby.WarmPool {
				p := testPool(2, 2, "b1")
				p.State = standby.PoolDisabled
				return p
			},
			insts: insts("ready:b1", "warming:b1", "claimed:b1", "draining:b1", "failed:b1"), st: okState,
			stops: []string{"i0", "i1"}, target: 0, phase: standby.RolloutComplete,
		},
		{
			name: "draining stops unclaimed and says drain_active", pool: func() *standby.WarmPool {
				p := testPool(2, 2, "b1")
				p.State = standby.PoolDraining
				return p
			},
			insts: insts("ready:b1", "claimed:b1"), st: okState,
			stops: []string{"i0"}, degraded: standby.DegradedDrainActive, phase: standby.RolloutComplete,
		},
		{
			name: "deleted stops every unclaimed instance", pool: func() *standby.WarmPool {
				p := testPool(2, 2, "b1")
				p.State = standby.PoolDeleted
				return p
			},
			insts: insts("ready:b1", "warming:b0", "ready:b0", "claimed:b1"), st: okState,
			stops: []string{"i0", "i1", "i2"}, phase: standby.RolloutComplete,
		},
		{
			name: "no resolved build", pool: func() *standby.WarmPool { return testPool(2, 2, "") },
			st: okState, target: 2, degraded: standby.DegradedTemplateBuildUnavailable, phase: standby.RolloutStalled,
		},
		{
			name: "resolved build missing", pool: func() *standby.WarmPool { return testPool(2, 2, "b1") },
			insts: insts("ready:b1"),
			st: func() planState {
				s := okState()
				s.BuildOK = false
				return s
			},
			target: 2, degraded: standby.DegradedTemplateBuildUnavailable, phase: standby.RolloutStalled,
		},
		{
			name: "rollout surges first and stops no old ready yet", pool: func() *standby.WarmPool { return testPool(3, 3, "b2") },
			insts: insts("ready:b1", "ready:b1", "ready:b1"), st: okState,
			starts: 1, target: 3, phase: standby.RolloutProgressing,
		},
		{
			name: "rollout stops old warming at once", pool: func() *standby.WarmPool { return testPool(2, 2, "b2") },
			insts: insts("warming:b1", "warming:b1"), st: okState,
			starts: 2, stops: []string{"i0", "i1"}, target: 2, phase: standby.RolloutComplete,
		},
		{
			name: "rollout removes an old ready once a new one is ready", pool: func() *standby.WarmPool { return testPool(3, 3, "b2") },
			insts: insts("ready:b1", "ready:b1", "ready:b1", "ready:b2"), st: okState,
			starts: 1, stops: []string{"i0"}, target: 3, phase: standby.RolloutProgressing,
		},
		{
			name: "rollout surge is a quarter of min_ready", pool: func() *standby.WarmPool { return testPool(8, 8, "b2") },
			insts: insts("ready:b1", "ready:b1", "ready:b1", "ready:b1", "ready:b1", "ready:b1", "ready:b1", "ready:b1"), st: okState,
			starts: 2, target: 8, phase: standby.RolloutProgressing,
		},
		{
			name: "rollout finishes", pool: func() *standby.WarmPool { return testPool(2, 2, "b2") },
			insts: insts("ready:b1", "ready:b2", "ready:b2"), st: okState,
			stops: []string{"i0"}, target: 2, phase: standby.RolloutComplete,
		},
		{
			name: "rollout complete", pool: func() *standby.WarmPool { return testPool(2, 2, "b2") },
			insts: insts("ready:b2", "ready:b2", "claimed:b1"), st: okState, target: 2, phase: standby.RolloutComplete,
		},
		{
			name: "stale ready replaced surge first", pool: func() *standby.WarmPool {
				p := testPool(2, 2, "b1")
				p.StaleAfterSeconds = 60
				return p
			},
			insts: insts("ready:b1", "ready:b1"), now: t0.Add(time.Hour), st: okState,
			starts: 1, target: 2, phase: standby.RolloutProgressing,
		},
		{
			name: "rollout without room keeps old ready", pool: func() *standby.WarmPool { return testPool(2, 2, "b2") },
			insts: insts("ready:b1", "ready:b1"),
			st: func() planState {
				s := okState()
				s.Hosts = oneHost(0)
				return s
			},
			target: 2, unavail: 1, degraded: standby.DegradedNoEligibleHosts, phase: standby.RolloutStalled,
		},
		{
			name: "backoff holds starts and asks to look again", pool: func() *standby.WarmPool { return testPool(2, 2, "b1") },
			st: func() planState {
				s := okState()
				s.Failures, s.LastFailure = 2, t0.Add(-time.Second) // waits 2s
				return s
			},
			target: 2, phase: standby.RolloutStalled, requeue: true,
		},
		{
			name: "backoff over", pool: func() *standby.WarmPool { return testPool(2, 2, "b1") },
			st: func() planState {
				s := okState()
				s.Failures, s.LastFailure = 2, t0.Add(-3*time.Second)
				return s
			},
			starts: 2, target: 2, phase: standby.RolloutComplete,
		},
		{
			name: "three failures degrade to artifact_prewarm_failed", pool: func() *standby.WarmPool { return testPool(2, 2, "b1") },
			st: func() planState {
				s := okState()
				s.Failures, s.LastFailure = 3, t0
				return s
			},
			target: 2, degraded: standby.DegradedArtifactPrewarmFailed, phase: standby.RolloutStalled, requeue: true,
		},
		{
			name: "backoff is capped", pool: func() *standby.WarmPool { return testPool(1, 1, "b1") },
			st: func() planState {
				s := okState()
				s.Failures, s.LastFailure = 40, t0.Add(-5*time.Minute)
				return s
			},
			starts: 1, target: 1, degraded: standby.DegradedArtifactPrewarmFailed, phase: standby.RolloutComplete,
		},
		{
			name: "host full gives unavailable", pool: func() *standby.WarmPool { return testPool(3, 3, "b1") },
			st: func() planState {
				s := okState()
				s.Hosts = oneHost(1)
				return s
			},
			starts: 1, target: 3, unavail: 2, degraded: standby.DegradedNoEligibleHosts, phase: standby.RolloutStalled,
		},
		{
			name: "host pool constraint", pool: func() *standby.WarmPool {
				p := testPool(2, 2, "b1")
				p.HostPoolID = standby.Ptr("gpu")
				return p
			},
			st: func() planState {
				s := okState()
				s.Hosts = []planHost{{ID: "host_a", HostPoolID: "cpu", Free: -1}}
				return s
			},
			target: 2, unavail: 2, degraded: standby.DegradedNoEligibleHosts, phase: standby.RolloutStalled,
		},
		{
			name: "cell constraint picks the matching host", pool: func() *standby.WarmPool {
				p := testPool(2, 2, "b1")
				p.CellID = standby.Ptr("c2")
				return p
			},
			st: func() planState {
				s := okState()
				s.Hosts = []planHost{{ID: "host_a", CellID: "c1", Free: -1}, {ID: "host_b", CellID: "c2", Free: 5}}
				return s
			},
			starts: 2, target: 2, phase: standby.RolloutComplete,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0.Add(time.Minute)
				if len(tt.insts) == 0 {
					now = t0
				}
			}
			st := tt.st()
			for i, c := range st.Checkouts {
				st.Checkouts[i] = c.Add(now.Sub(t0))
			}
			if !st.LastFailure.IsZero() {
				st.LastFailure = st.LastFailure.Add(now.Sub(t0))
			}
			pool := tt.pool()
			r := plan(pool, tt.insts, st, now)
			if len(r.Starts) != tt.starts {
				t.Errorf("starts = %d, want %d", len(r.Starts), tt.starts)
			}
			if got := stopIDs(r); fmt.Sprint(got) != fmt.Sprint(tt.stops) {
				t.Errorf("stops = %v, want %v", got, tt.stops)
			}
			if r.Status.Target != tt.target {
				t.Errorf("target = %d, want %d", r.Status.Target, tt.target)
			}
			if r.Status.Unavailable != tt.unavail {
				t.Errorf("unavailable = %d, want %d", r.Status.Unavailable, tt.unavail)
			}
			got := ""
			if r.Status.DegradedReason != nil {
				got = *r.Status.DegradedReason
			}
			if got != tt.degraded {
				t.Errorf("degraded = %q, want %q", got, tt.degraded)
			}
			if r.Status.RolloutStatus.Phase != tt.phase {
				t.Errorf("phase = %q, want %q", r.Status.RolloutStatus.Phase, tt.phase)
			}
			if (r.Requeue > 0) != tt.requeue {
				t.Errorf("requeue = %v, want requeue %v", r.Requeue, tt.requeue)
			}
			for _, s := range r.Stops {
				for _, in := range tt.insts {
					if in.ID == s.InstanceID && in.State != standby.InstanceWarming && in.State != standby.InstanceReady {
						t.Errorf("stops %s in state %s", in.ID, in.State)
					}
				}
			}
			want := map[string]int{}
			stopped := map[string]bool{}
			for _, s := range r.Stops {
				stopped[s.InstanceID] = true
			}
			for _, in := range tt.insts {
				if (in.State == standby.InstanceReady || in.State == standby.InstanceWarming) && !stopped[in.ID] {
					want[in.TemplateBuildID]++
				}
			}
			if len(r.Starts) > 0 {
				want[*pool.ResolvedTemplateBuildID] += len(r.Starts)
			}
			if fmt.Sprint(r.Status.RolloutStatus.CurrentCounts) != fmt.Sprint(want) {
				t.Errorf("current_counts = %v, want %v", r.Status.RolloutStatus.CurrentCounts, want)
			}
		})
	}
}

func TestPlanStartsSpreadOverHosts(t *testing.T) {
	st := okState()
	st.Hosts = []planHost{{ID: "host_a", Free: 2}, {ID: "host_b", Free: 3}}
	r := plan(testPool(4, 4, "b1"), nil, st, t0)
	per := map[string]int{}
	for _, s := range r.Starts {
		per[s.HostID]++
	}
	if per["host_a"] != 2 || per["host_b"] != 2 {
		t.Fatalf("starts per host = %v, want 2 and 2", per)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		n    int
		want time.Duration
	}{{0, 0}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {9, 256 * time.Second}, {10, 5 * time.Minute}, {1000, 5 * time.Minute}}
	for _, tt := range tests {
		if got := backoff(time.Second, 5*time.Minute, tt.n); got != tt.want {
			t.Errorf("backoff(%d) = %v, want %v", tt.n, got, tt.want)
		}
	}
}

func TestPoolMemoryStreak(t *testing.T) {
	tests := []struct {
		name  string
		steps func(m *poolMemory) time.Time // returns when to read
		want  int
	}{
		{"failures count", func(m *poolMemory) time.Time {
			m.failures = 2
			return t0
		}, 2},
		{"ready resets a clean pool", func(m *poolMemory) time.Time {
			m.readyAfter(t0)
			return t0
		}, 0},
		{"ready after failures keeps them a while", func(m *poolMemory) time.Time {
			m.failures = 3
			m.readyAfter(t0)
			return t0.Add(earlyDeath - time.Second)
		}, 3},
		{"the streak ends once readiness held", func(m *poolMemory) time.Time {
			m.failures = 3
			m.readyAfter(t0)
			return t0.Add(earlyDeath)
		}, 0},
		{"a second ready does not clear the streak", func(m *poolMemory) time.Time {
			m.failures = 3
			m.readyAfter(t0)
			m.readyAfter(t0.Add(time.Second))
			return t0.Add(2 * time.Second)
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &poolMemory{}
			at := tt.steps(m)
			if got := m.effectiveFailures(at); got != tt.want {
				t.Fatalf("effective failures = %d, want %d", got, tt.want)
			}
		})
	}
}

// BenchmarkPlan plans a large pool mid-rollout.
func BenchmarkPlan(b *testing.B) {
	p := testPool(500, 600, "b2")
	var specs []string
	for i := range 1000 {
		switch i % 4 {
		case 0:
			specs = append(specs, "ready:b1")
		case 1:
			specs = append(specs, "ready:b2")
		case 2:
			specs = append(specs, "claimed:b1")
		default:
			specs = append(specs, "warming:b2")
		}
	}
	in := insts(specs...)
	st := okState()
	b.ReportAllocs()
	for b.Loop() {
		plan(p, in, st, t0.Add(time.Hour))
	}
}
