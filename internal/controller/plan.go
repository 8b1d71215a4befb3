package controller

import (
	"math"
	"sort"
	"time"

	"github.com/standbyhq/standby"
)

// checkoutWindow is how far back checkouts raise a pool's target.
const checkoutWindow = 10 * time.Second

// Stop reasons recorded on draining instances.
const (
	reasonDisabled = "pool disabled"
	reasonDraining = "pool draining"
	reasonDeleted  = "pool deleted"
	reasonRollout  = "rollout: replaced by the resolved build"
	reasonStale    = "stale: older than stale_after_seconds"
	reasonExcess   = "excess: above max_ready"
)

// planHost is a host as placement sees it.
type planHost struct {
	ID         string
	HostPoolID string
	CellID     string
	// Free is how many more instances the host takes; negative means no
	// limit.
	Free int
}

// planState is what plan needs besides the pool and its instances; the
// executor gathers it.
type planState struct {
	// BuildOK says the pool's resolved build exists; without it nothing
	// starts (template_build_unavailable).
	BuildOK bool
	// Hosts are every host with an agent; plan filters by the pool's
	// host_pool_id / cell_id.
	Hosts []planHost
	// Failures counts consecutive start failures; LastFailure is when the
	// latest happened.
	Failures    int
	LastFailure time.Time
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// Checkouts are when checkouts of this pool were observed.
	Checkouts []time.Time
}

// startAction starts one instance of the pool's resolved build.
type startAction struct {
	HostID string
}

// stopAction stops an unclaimed instance.
type stopAction struct {
	InstanceID string
	Reason     string
}

// planResult is what the executor does for one look at a pool.
type planResult struct {
	Starts []startAction
	Stops  []stopAction
	Status standby.WarmPoolControllerStatus
	// Requeue, when positive, asks for another look after it: starts were
	// held back by the failure backoff.
	Requeue time.Duration
}

// surge is how many instances above max_ready a rollout may hold.
func surge(minReady int) int {
	return max(1, int(math.Ceil(0.25*float64(minReady))))
}

// plan decides what to do with a pool. It is pure: the same inputs give the
// same result. Claimed instances are never stopped.
func plan(pool *standby.WarmPool, instances []*standby.Instance, st planState, now time.Time) planResult {
	cur := ""
	if pool.ResolvedTemplateBuildID != nil {
		cur = *pool.ResolvedTemplateBuildID
	}
	stale := time.Duration(pool.StaleAfterSeconds) * time.Second
	var curWarming, oldWarming, curReady, oldReady []*standby.Instance
	counts := map[string]int{}
	for _, in := range instances {
		switch in.State {
		case standby.InstanceWarming:
			counts[in.TemplateBuildID]++
			if in.TemplateBuildID == cur {
				curWarming = append(curWarming, in)
			} else {
				oldWarming = append(oldWarming, in)
			}
		case standby.InstanceReady:
			counts[in.TemplateBuildID]++
			if in.TemplateBuildID == cur && (stale <= 0 || now.Sub(in.CreatedAt) < stale) {
				curReady = append(curReady, in)
			} else {
				oldReady = append(oldReady, in)
			}
		}
	}
	// Oldest first, ids break ties (they are time-ordered too).
	byAge := func(s []*standby.Instance) {
		sort.Slice(s, func(i, j int) bool {
			if !s[i].CreatedAt.Equal(s[j].CreatedAt) {
				return s[i].CreatedAt.Before(s[j].CreatedAt)
			}
			return s[i].ID < s[j].ID
		})
	}
	byAge(curWarming)
	byAge(oldWarming)
	byAge(curReady)
	byAge(oldReady)

	var res planResult
	// current_counts describe the pool once the result is applied, as
	// the status is written after the actions.
	res.Status.RolloutStatus = standby.RolloutStatus{TargetBuildID: cur, CurrentCounts: counts}
	stop := func(reason string, s ...*standby.Instance) {
		for _, in := range s {
			res.Stops = append(res.Stops, stopAction{InstanceID: in.ID, Reason: reason})
			if counts[in.TemplateBuildID]--; counts[in.TemplateBuildID] == 0 {
				delete(counts, in.TemplateBuildID)
			}
		}
	}
	oldLeft := len(oldWarming) + len(oldReady)
	phase := func(blocked bool) string {
		switch {
		case blocked:
			return standby.RolloutStalled
		case oldLeft > 0:
			return standby.RolloutProgressing
		default:
			return standby.RolloutComplete
		}
	}

	switch pool.State {
	case standby.PoolDisabled, standby.PoolDraining, standby.PoolDeleted:
		reason := map[string]string{standby.PoolDisabled: reasonDisabled, standby.PoolDraining: reasonDraining, standby.PoolDeleted: reasonDeleted}[pool.State]
		stop(reason, curWarming...)
		stop(reason, oldWarming...)
		stop(reason, curReady...)
		stop(reason, oldReady...)
		oldLeft = 0
		res.Status.RolloutStatus.Phase = phase(false)
		if pool.State == standby.PoolDraining {
			res.Status.DegradedReason = standby.Ptr(standby.DegradedDrainActive)
		}
		return res
	}

	maxReady := max(pool.MaxReady, pool.MinReady)
	recent := 0
	for _, t := range st.Checkouts {
		if !t.After(now) && now.Sub(t) < checkoutWindow {
			recent++
		}
	}
	target := min(maxReady, pool.MinReady+recent)
	res.Status.Target = target

	if cur == "" || !st.BuildOK {
		res.Status.DegradedReason = standby.Ptr(standby.DegradedTemplateBuildUnavailable)
		res.Status.RolloutStatus.Phase = phase(true)
		res.Status.RolloutStatus.Message = "the pool's resolved build is unavailable"
		return res
	}

	// Old warming instances can go at once: they serve nobody yet.
	stop(reasonRollout, oldWarming...)
	oldLeft -= len(oldWarming)

	limit := maxReady
	if len(oldReady) > 0 {
		limit += surge(pool.MinReady)
	}
	alive := len(curWarming) + len(curReady) + len(oldReady)

	// Trim above the limit: warming first (newest first), then old ready
	// (oldest first), then newest ready.
	if excess := alive - limit; excess > 0 {
		for i := len(curWarming) - 1; i >= 0 && excess > 0; i-- {
			stop(reasonExcess, curWarming[i])
			curWarming = curWarming[:i]
			excess--
		}
		for len(oldReady) > 0 && excess > 0 {
			stop(reasonExcess, oldReady[0])
			oldReady = oldReady[1:]
			oldLeft--
			excess--
		}
		if len(oldReady) == 0 && limit > maxReady {
			// The rollout is over: the surge allowance goes with it.
			excess += limit - maxReady
			limit = maxReady
		}
		for i := len(curReady) - 1; i >= 0 && excess > 0; i-- {
			stop(reasonExcess, curReady[i])
			curReady = curReady[:i]
			excess--
		}
		alive = len(curWarming) + len(curReady) + len(oldReady)
	}

	// An old ready instance goes only while ready stays >= target without
	// it: new ones are started (surge) first.
	removable := min(len(oldReady), len(curReady)+len(oldReady)-target)
	for i := 0; i < removable; i++ {
		in := oldReady[i]
		reason := reasonRollout
		if in.TemplateBuildID == cur {
			reason = reasonStale
		}
		stop(reason, in)
		oldLeft--
		alive--
	}

	want := max(0, min(target-len(curReady)-len(curWarming), limit-alive))

	// Place the starts, most free host first.
	hosts := eligibleHosts(pool, st.Hosts)
	placed := 0
	for ; placed < want; placed++ {
		h := -1
		for i := range hosts {
			if hosts[i].Free == 0 {
				continue
			}
			if h < 0 || freeer(hosts[i].Free, hosts[h].Free) {
				h = i
			}
		}
		if h < 0 {
			break
		}
		res.Starts = append(res.Starts, startAction{HostID: hosts[h].ID})
		if hosts[h].Free > 0 {
			hosts[h].Free--
		}
	}
	res.Status.Unavailable = want - placed

	blocked := false
	if st.Failures > 0 && len(res.Starts) > 0 {
		if wait := st.LastFailure.Add(backoff(st.BackoffBase, st.BackoffMax, st.Failures)).Sub(now); wait > 0 {
			res.Starts = nil
			res.Requeue = wait
			blocked = true
		}
	}
	if res.Status.Unavailable > 0 {
		blocked = true
	}
	if len(res.Starts) > 0 {
		counts[cur] += len(res.Starts)
	}
	res.Status.RolloutStatus.Phase = phase(blocked)
	switch {
	case st.Failures >= 3:
		res.Status.DegradedReason = standby.Ptr(standby.DegradedArtifactPrewarmFailed)
	case res.Status.Unavailable > 0:
		res.Status.DegradedReason = standby.Ptr(standby.DegradedNoEligibleHosts)
	}
	return res
}

// freeer reports whether free count a beats b (negative is unlimited).
func freeer(a, b int) bool {
	if a < 0 {
		return b >= 0
	}
	return b >= 0 && a > b
}

// eligibleHosts returns copies of the hosts matching the pool's
// host_pool_id and cell_id, when set.
func eligibleHosts(pool *standby.WarmPool, hosts []planHost) []planHost {
	var out []planHost
	for _, h := range hosts {
		if pool.HostPoolID != nil && *pool.HostPoolID != "" && *pool.HostPoolID != h.HostPoolID {
			continue
		}
		if pool.CellID != nil && *pool.CellID != "" && *pool.CellID != h.CellID {
			continue
		}
		out = append(out, h)
	}
	return out
}
