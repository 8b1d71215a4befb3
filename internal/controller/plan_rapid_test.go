package controller

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/standbyhq/standby"
	"pgregory.net/rapid"
)

// world simulates a pool, its instances and the controller's memory with no
// store and no processes: the actions of the rapid test change it, and
// each reconcile applies plan's result to it.
type world struct {
	pool      *standby.WarmPool
	inst      map[string]*standby.Instance
	seq       int
	builds    int
	now       time.Time
	failures  int
	lastFail  time.Time
	checkouts []time.Time
	handedOut map[string]bool // instance ids checked out, ever
	hostFree  int             // negative: unlimited
}

func (w *world) newID() string {
	w.seq++
	return fmt.Sprintf("inst_%06d", w.seq)
}

func (w *world) sorted(states ...string) []*standby.Instance {
	var out []*standby.Instance
	for _, in := range w.inst {
		for _, s := range states {
			if in.State == s {
				out = append(out, in)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (w *world) state() planState {
	used := len(w.sorted(standby.InstanceWarming, standby.InstanceReady, standby.InstanceClaimed))
	free := -1
	if w.hostFree >= 0 {
		free = max(0, w.hostFree-used)
	}
	return planState{
		BuildOK: true, Hosts: oneHost(free), Failures: w.failures, LastFailure: w.lastFail,
		BackoffBase: time.Second, BackoffMax: 30 * time.Second, Checkouts: w.checkouts,
	}
}

func (w *world) reconcile(t *rapid.T) {
	var list []*standby.Instance
	for _, in := range w.sorted(standby.InstanceWarming, standby.InstanceReady, standby.InstanceClaimed, standby.InstanceFailed) {
		c := *in
		list = append(list, &c)
	}
	st := w.state()
	res := plan(w.pool, list, st, w.now)
	cur := *w.pool.ResolvedTemplateBuildID
	stale := time.Duration(w.pool.StaleAfterSeconds) * time.Second

	for _, s := range res.Stops {
		in, ok := w.inst[s.InstanceID]
		if !ok {
			t.Fatalf("plan stops unknown instance %s", s.InstanceID)
		}
		if in.State == standby.InstanceClaimed {
			t.Fatalf("plan stops claimed instance %s", in.ID)
		}
		if in.State != standby.InstanceWarming && in.State != standby.InstanceReady {
			t.Fatalf("plan stops %s in state %s", in.ID, in.State)
		}
		delete(w.inst, in.ID) // draining, then gone
	}
	for _, s := range res.Starts {
		if s.HostID != "host_a" {
			t.Fatalf("start on unknown host %q", s.HostID)
		}
		id := w.newID()
		w.inst[id] = &standby.Instance{ID: id, State: standby.InstanceWarming, TemplateBuildID: cur, CreatedAt: w.now, PoolID: w.pool.ID}
	}

	ready, alive, oldReady := 0, 0, 0
	counts := map[string]int{}
	for _, in := range w.inst {
		if in.State == standby.InstanceWarming || in.State == standby.InstanceReady {
			alive++
			counts[in.TemplateBuildID]++
		}
		if in.State == standby.InstanceReady {
			ready++
			if in.TemplateBuildID != cur || w.now.Sub(in.CreatedAt) >= stale {
				oldReady++
			}
		}
	}
	limit := w.pool.MaxReady
	if oldReady > 0 {
		limit += surge(w.pool.MinReady)
	}
	if alive > limit {
		t.Fatalf("warming+ready = %d above limit %d (max_ready %d, old ready %d)", alive, limit, w.pool.MaxReady, oldReady)
	}
	if fmt.Sprint(counts) != fmt.Sprint(res.Status.RolloutStatus.CurrentCounts) {
		t.Fatalf("current_counts = %v, truth %v", res.Status.RolloutStatus.CurrentCounts, counts)
	}
	if res.Status.Target < w.pool.MinReady || res.Status.Target > w.pool.MaxReady {
		t.Fatalf("target %d outside [min_ready %d, max_ready %d]", res.Status.Target, w.pool.MinReady, w.pool.MaxReady)
	}
	if res.Status.Unavailable < 0 || res.Status.Unavailable > res.Status.Target {
		t.Fatalf("unavailable %d outside [0, target %d]", res.Status.Unavailable, res.Status.Target)
	}
	switch phase := res.Status.RolloutStatus.Phase; {
	case phase == standby.RolloutComplete && oldReady > 0:
		t.Fatalf("phase complete with %d old ready", oldReady)
	case phase == standby.RolloutProgressing && oldReady == 0:
		t.Fatalf("phase progressing with no old ready")
	}
	// Surge first: a ready instance is stopped only if ready stays at
	// target (or it is above max_ready, which PATCH can cause).
	for _, s := range res.Stops {
		if s.Reason == reasonRollout || s.Reason == reasonStale {
			if ready < res.Status.Target {
				for _, l := range list {
					if l.ID == s.InstanceID && l.State == standby.InstanceReady {
						t.Fatalf("rollout stopped ready %s leaving ready %d below target %d", l.ID, ready, res.Status.Target)
					}
				}
			}
		}
	}
	if w.failures >= 3 && (res.Status.DegradedReason == nil || *res.Status.DegradedReason != standby.DegradedArtifactPrewarmFailed) {
		t.Fatalf("degraded_reason = %v after %d failures", res.Status.DegradedReason, w.failures)
	}
	if len(res.Starts) > 0 && w.failures > 0 && w.now.Before(w.lastFail.Add(backoff(st.BackoffBase, st.BackoffMax, w.failures))) {
		t.Fatalf("started during backoff")
	}
}

func TestPlanStateMachine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		minReady := rapid.IntRange(0, 6).Draw(t, "min_ready")
		p := &standby.WarmPool{
			ID: "twp_1", State: standby.PoolEnabled,
			MinReady: minReady, MaxReady: minReady + rapid.IntRange(0, 4).Draw(t, "extra"),
			StaleAfterSeconds:       rapid.IntRange(30, 600).Draw(t, "stale_after"),
			ResolvedTemplateBuildID: standby.Ptr("tb_1"),
		}
		w := &world{
			pool: p, inst: map[string]*standby.Instance{}, builds: 1, now: t0,
			handedOut: map[string]bool{},
			hostFree:  rapid.SampledFrom([]int{-1, -1, 4, 12}).Draw(t, "host_free"),
		}
		pick := func(t *rapid.T, label string, states ...string) *standby.Instance {
			c := w.sorted(states...)
			if len(c) == 0 {
				return nil
			}
			return c[rapid.IntRange(0, len(c)-1).Draw(t, label)]
		}
		t.Repeat(map[string]func(*rapid.T){
			"": func(t *rapid.T) { w.reconcile(t) },
			"reconcile": func(t *rapid.T) {
				w.reconcile(t)
			},
			"checkout": func(t *rapid.T) {
				// The oldest ready instance, as Store.Checkout picks.
				c := w.sorted(standby.InstanceReady)
				if len(c) == 0 {
					t.Skip("nothing ready")
				}
				in := c[0]
				if w.handedOut[in.ID] {
					t.Fatalf("instance %s handed out twice", in.ID)
				}
				w.handedOut[in.ID] = true
				in.State = standby.InstanceClaimed
				w.checkouts = append(w.checkouts, w.now)
			},
			"instance dies": func(t *rapid.T) {
				in := pick(t, "victim", standby.InstanceReady, standby.InstanceClaimed)
				if in == nil {
					t.Skip("nothing alive")
				}
				if in.State == standby.InstanceClaimed {
					delete(w.inst, in.ID) // its sandbox fails, the row goes
					return
				}
				in.State = standby.InstanceFailed
			},
			"sandbox ends": func(t *rapid.T) {
				in := pick(t, "ended", standby.InstanceClaimed)
				if in == nil {
					t.Skip("nothing claimed")
				}
				delete(w.inst, in.ID)
			},
			"patch min max": func(t *rapid.T) {
				p.MinReady = rapid.IntRange(0, 6).Draw(t, "new_min")
				p.MaxReady = p.MinReady + rapid.IntRange(0, 4).Draw(t, "new_extra")
			},
			"tag move": func(t *rapid.T) {
				w.builds++
				p.ResolvedTemplateBuildID = standby.Ptr(fmt.Sprintf("tb_%d", w.builds))
			},
			"start fails": func(t *rapid.T) {
				in := pick(t, "failing", standby.InstanceWarming)
				if in == nil {
					t.Skip("nothing warming")
				}
				in.State = standby.InstanceFailed
				w.failures++
				w.lastFail = w.now
			},
			"becomes ready": func(t *rapid.T) {
				in := pick(t, "warm", standby.InstanceWarming)
				if in == nil {
					t.Skip("nothing warming")
				}
				in.State = standby.InstanceReady
				in.ReadyAt = standby.Ptr(w.now)
				w.failures = 0
			},
			"clock advances": func(t *rapid.T) {
				w.now = w.now.Add(time.Duration(rapid.IntRange(1, 120).Draw(t, "seconds")) * time.Second)
			},
		})
	})
}

// TestPlanRollsOutWhenQuiet checks liveness: with instances becoming ready
// and nothing else happening, a tag move ends with every ready instance on
// the new build and ready at target throughout once the pool was full.
func TestPlanRollsOutWhenQuiet(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		minReady := rapid.IntRange(1, 8).Draw(t, "min_ready")
		p := testPool(minReady, minReady+rapid.IntRange(0, 3).Draw(t, "extra"), "tb_1")
		w := &world{pool: p, inst: map[string]*standby.Instance{}, now: t0, handedOut: map[string]bool{}, hostFree: -1}
		settle := func() {
			for range 100 {
				w.reconcile(t)
				warming := w.sorted(standby.InstanceWarming)
				if len(warming) == 0 {
					return
				}
				for _, in := range warming {
					in.State = standby.InstanceReady
				}
			}
			t.Fatalf("pool did not settle")
		}
		settle()
		if n := len(w.sorted(standby.InstanceReady)); n != minReady {
			t.Fatalf("ready = %d, want %d", n, minReady)
		}
		p.ResolvedTemplateBuildID = standby.Ptr("tb_2")
		for range 100 {
			w.reconcile(t)
			if n := len(w.sorted(standby.InstanceReady)); n < minReady {
				t.Fatalf("ready dropped to %d below min_ready %d during rollout", n, minReady)
			}
			warming := w.sorted(standby.InstanceWarming)
			for _, in := range warming {
				in.State = standby.InstanceReady
			}
		}
		for _, in := range w.sorted(standby.InstanceReady) {
			if in.TemplateBuildID != "tb_2" {
				t.Fatalf("instance %s still on %s after the rollout", in.ID, in.TemplateBuildID)
			}
		}
		res := plan(p, w.sorted(standby.InstanceReady), w.state(), w.now)
		if res.Status.RolloutStatus.Phase != standby.RolloutComplete {
			t.Fatalf("phase = %s, want complete", res.Status.RolloutStatus.Phase)
		}
	})
}
