package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/standbyhq/standby"
)

// errStateChanged aborts an instance update whose state moved since the
// look that planned it (e.g. a checkout claimed it).
var errStateChanged = errors.New("instance state changed")

// syncPool looks at one pool: re-resolves a tracked tag, plans, starts and
// stops instances, and records the pool's status.
func (c *Controller) syncPool(ctx context.Context, id string) error {
	log := c.logger.With("pool", id)
	p, err := c.store.FindWarmPool(ctx, id)
	if standby.IsCode(err, standby.ENotFound) {
		c.mu.Lock()
		delete(c.pools, id)
		c.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("find pool %s: %w", id, err)
	}

	build, err := c.poolBuild(ctx, p)
	if err != nil {
		return err
	}
	if build != nil && p.State != standby.PoolDeleted && (p.ResolvedTemplateBuildID == nil || *p.ResolvedTemplateBuildID != build.ID) {
		p, err = c.store.UpdateWarmPool(ctx, id, func(p *standby.WarmPool) error {
			if p.SetResolvedBuild(build) {
				p.UpdatedAt = c.clock.Now()
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("roll pool %s to build %s: %w", id, build.ID, err)
		}
		log.Info("pool rolls to a new build", "build", build.ID, "rollout_generation", p.RolloutGeneration)
	}

	// Claimed instances are left out: the plan never touches them, and a
	// pool under a checkout burst has thousands, which every look would
	// otherwise read.
	instances, err := c.findInstances(ctx, standby.InstanceFilter{PoolID: id, Brief: true, States: []string{
		standby.InstanceWarming, standby.InstanceReady, standby.InstanceDraining, standby.InstanceFailed}})
	if err != nil {
		return fmt.Errorf("list instances of pool %s: %w", id, err)
	}
	for _, in := range instances {
		if in.State == standby.InstanceDraining {
			c.finishStop(ctx, in) // a stop that an earlier look could not finish
		}
	}

	now := c.clock.Now()
	c.mu.Lock()
	m := c.memory(id)
	// Checkouts are the instances ready at the last look that are gone
	// from ready without failing or being drained (claimed, or claimed and
	// already stopped).
	ready, stillHere := map[string]bool{}, map[string]bool{}
	for _, in := range instances {
		switch in.State {
		case standby.InstanceReady:
			ready[in.ID], stillHere[in.ID] = true, true
		case standby.InstanceDraining, standby.InstanceFailed:
			stillHere[in.ID] = true
		}
	}
	if m.seen {
		for id := range m.ready {
			if !stillHere[id] {
				m.checkouts = append(m.checkouts, now)
			}
		}
	}
	m.ready, m.seen = ready, true
	kept := m.checkouts[:0]
	for _, t := range m.checkouts {
		if now.Sub(t) < checkoutWindow {
			kept = append(kept, t)
		}
	}
	m.checkouts = kept
	st := planState{
		BuildOK:     build != nil,
		Failures:    m.effectiveFailures(now),
		LastFailure: m.lastFailure,
		BackoffBase: c.cfg.BackoffBase,
		BackoffMax:  c.cfg.BackoffMax,
		Checkouts:   append([]time.Time(nil), m.checkouts...),
	}
	c.mu.Unlock()

	// Counting a host's instances and creating the new ones is one step,
	// so two pools looked at together never overfill a host.
	c.placeMu.Lock()
	hosts, err := c.hostSlots(ctx)
	if err != nil {
		c.placeMu.Unlock()
		return err
	}
	st.Hosts = hosts
	res := plan(p, instances, st, now)
	// The rows are written concurrently so that the store's group commit
	// stores them in one transaction: a target raised by a burst starts
	// its instances after one fsync, not one per instance.
	started := make([]*standby.Instance, len(res.Starts))
	errs := make([]error, len(res.Starts))
	var wg sync.WaitGroup
	for k, s := range res.Starts {
		in := &standby.Instance{
			ID:                standby.NewID(standby.PrefixInstance),
			ProjectID:         p.ProjectID,
			PoolID:            p.ID,
			State:             standby.InstanceWarming,
			TemplateBuildID:   build.ID,
			HostID:            s.HostID,
			Ports:             map[string]int{},
			Labels:            map[string]string{},
			Annotations:       map[string]string{},
			RolloutGeneration: p.RolloutGeneration,
			CreatedAt:         now,
		}
		wg.Go(func() {
			if errs[k] = c.store.CreateInstance(ctx, in); errs[k] == nil {
				started[k] = in
			}
		})
	}
	wg.Wait()
	c.placeMu.Unlock()
	started = slices.DeleteFunc(started, func(in *standby.Instance) bool { return in == nil })
	// Everything stored is started, also when some rows failed, so no row
	// waits in warming for a process nobody starts.
	resources := p.Resources.FillFrom(build.Resources)
	for _, in := range started {
		c.startInstance(ctx, in, standby.InstanceSpec{ID: in.ID, ProjectID: p.ProjectID, PoolID: p.ID, Build: build, Resources: resources})
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("create instances of pool %s: %w", id, err)
	}
	for _, s := range res.Stops {
		in, err := c.store.UpdateInstance(ctx, s.InstanceID, func(in *standby.Instance) error {
			if in.State != standby.InstanceWarming && in.State != standby.InstanceReady {
				return errStateChanged
			}
			in.State = standby.InstanceDraining
			in.Reason = s.Reason
			in.EndedAt = standby.Ptr(now)
			return nil
		})
		if errors.Is(err, errStateChanged) || standby.IsCode(err, standby.ENotFound) {
			continue // claimed or gone meanwhile: not ours to stop
		}
		if err != nil {
			return fmt.Errorf("drain instance %s: %w", s.InstanceID, err)
		}
		log.Debug("stopping instance", "instance", in.ID, "reason", s.Reason)
		c.finishStop(ctx, in)
	}

	res.Status.LastReconciledAt = now
	if err := c.store.SetWarmPoolStatus(ctx, id, res.Status); err != nil && !standby.IsCode(err, standby.ENotFound) {
		return fmt.Errorf("record status of pool %s: %w", id, err)
	}
	log.Debug("pool looked at", "target", res.Status.Target, "starts", len(res.Starts), "stops", len(res.Stops), "phase", res.Status.RolloutStatus.Phase)
	if res.Requeue > 0 {
		c.queue.AddAfter(keyPool+id, res.Requeue)
	}
	return nil
}

// poolBuild returns the build a pool should run: for track_tag pools the
// build its tag points at now, else its resolved build. nil when it does
// not exist (template_build_unavailable).
func (c *Controller) poolBuild(ctx context.Context, p *standby.WarmPool) (*standby.Build, error) {
	if p.VersionPolicy == standby.PolicyTrackTag && p.State != standby.PoolDeleted {
		r, err := standby.ParseTemplateRef(p.TemplateRef)
		if err != nil {
			return nil, nil
		}
		b, err := standby.ResolveTemplateRef(ctx, c.store, p.ProjectID, r.Name+":"+p.EffectiveTrackTag())
		switch {
		case err == nil:
			return b, nil
		case standby.IsCode(err, standby.ENotFound), standby.IsCode(err, standby.EValidation):
			return nil, nil
		default:
			return nil, fmt.Errorf("resolve tag of pool %s: %w", p.ID, err)
		}
	}
	if p.ResolvedTemplateBuildID == nil {
		return nil, nil
	}
	b, err := c.store.FindBuild(ctx, p.ProjectID, *p.ResolvedTemplateBuildID)
	if standby.IsCode(err, standby.ENotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find build of pool %s: %w", p.ID, err)
	}
	return b, nil
}

// startInstance starts a stored warming instance in the background,
// bounded by MaxParallelStarts (where it listens comes with its ready
// event). A failure marks it failed and counts toward the pool's backoff.
func (c *Controller) startInstance(ctx context.Context, in *standby.Instance, spec standby.InstanceSpec) {
	c.goBackground(func() {
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return // the next start reconciles the warming row
		}
		defer func() { <-c.sem }()
		if c.checkoutsStreaming() {
			select {
			case c.burstGate <- struct{}{}:
				defer func() { <-c.burstGate }()
			case <-ctx.Done():
				return
			}
		}
		// Where it listens is recorded with its readiness (the ready
		// event carries it): nothing is written here unless it failed.
		a, ok := c.byHost[in.HostID]
		err := fmt.Errorf("no agent for host %s", in.HostID)
		if ok {
			_, err = a.StartInstance(ctx, spec)
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.logger.Warn("start instance", "pool", in.PoolID, "instance", in.ID, "err", err)
			if ok {
				_ = a.StopInstance(ctx, in.ID) // leave nothing half started
			}
			// The agent may have reported the failure as an event already,
			// which counted it: count it only once.
			if c.markFailed(ctx, in.ID, standby.InstanceWarming, "start failed: "+err.Error()) {
				c.startFailed(in.PoolID)
			}
			c.WakePool(in.PoolID)
		}
	})
}

// markFailed moves an instance in state from to failed.
func (c *Controller) markFailed(ctx context.Context, id, from, reason string) bool {
	_, err := c.store.UpdateInstance(ctx, id, func(i *standby.Instance) error {
		if i.State != from {
			return errStateChanged
		}
		i.State = standby.InstanceFailed
		i.Reason = reason
		i.EndedAt = standby.Ptr(c.clock.Now())
		return nil
	})
	if err != nil && !errors.Is(err, errStateChanged) && !standby.IsCode(err, standby.ENotFound) && ctx.Err() == nil {
		c.logger.Warn("mark instance failed", "instance", id, "err", err)
	}
	return err == nil
}

// syncSandbox acts on a sandbox's state: a stopping sandbox gets its
// instance stopped and becomes stopped; a running one past expires_at
// expires; an ended one loses any instance left.
func (c *Controller) syncSandbox(ctx context.Context, id string) error {
	sb, err := c.store.FindSandbox(ctx, id)
	if standby.IsCode(err, standby.ENotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find sandbox %s: %w", id, err)
	}
	now := c.clock.Now()
	if sb.State == standby.SandboxRunning {
		if sb.ExpiresAt.IsZero() || now.Before(sb.ExpiresAt) {
			return nil
		}
		sb, err = c.store.UpdateSandbox(ctx, id, func(s *standby.Sandbox) error {
			if s.State != standby.SandboxRunning {
				return errStateChanged
			}
			s.State = standby.SandboxExpired
			s.StoppedAt = standby.Ptr(now)
			return nil
		})
		if errors.Is(err, errStateChanged) {
			c.WakeSandbox(id) // act on whatever it became
			return nil
		}
		if err != nil {
			return fmt.Errorf("expire sandbox %s: %w", id, err)
		}
		c.logger.Info("sandbox expired", "sandbox", id)
	}
	if sb.State == standby.SandboxRunning {
		return nil
	}
	if err := c.endInstance(ctx, sb.InstanceID); err != nil {
		return err
	}
	if sb.State == standby.SandboxStopping {
		_, err := c.store.UpdateSandbox(ctx, id, func(s *standby.Sandbox) error {
			if s.State != standby.SandboxStopping {
				return errStateChanged
			}
			s.State = standby.SandboxStopped
			s.StoppedAt = standby.Ptr(c.clock.Now())
			return nil
		})
		if err != nil && !errors.Is(err, errStateChanged) {
			return fmt.Errorf("mark sandbox %s stopped: %w", id, err)
		}
		c.logger.Info("sandbox stopped", "sandbox", id)
	}
	if sb.WarmPoolCheckout.ID != "" {
		c.WakePool(sb.WarmPoolCheckout.ID)
	}
	return nil
}

// endInstance stops a sandbox's instance and deletes its row, if it still
// has one.
func (c *Controller) endInstance(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	in, err := c.store.FindInstance(ctx, id)
	if standby.IsCode(err, standby.ENotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find instance %s: %w", id, err)
	}
	if err := c.stopInstance(ctx, in); err != nil {
		return err
	}
	return c.deleteInstance(ctx, id)
}
