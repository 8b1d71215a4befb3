package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/standbyhq/standby"
)

// ColdStart starts an instance of build for sb on a host with room, waits
// until it is ready (bounded by ctx and ColdStartTimeout), then stores sb
// claiming it (Store.CreateSandbox) and returns it. unavailable when no
// host can take it or it fails to start.
func (c *Controller) ColdStart(ctx context.Context, sb *standby.Sandbox, build *standby.Build, env map[string]string) (*standby.Sandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ColdStartTimeout)
	defer cancel()
	select {
	case <-c.started:
	case <-ctx.Done():
		return nil, standby.Errorf(standby.EUnavailable, "cold start: the controller is not running yet")
	}

	in, err := c.placeColdInstance(ctx, sb, build)
	if err != nil {
		return nil, err
	}
	log := c.logger.With("instance", in.ID, "sandbox", sb.ID)

	// The waiter exists before the start, so no event can be missed.
	events := make(chan standby.InstanceEvent, 1)
	c.mu.Lock()
	c.waiters[in.ID] = events
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, in.ID)
		c.mu.Unlock()
	}()

	a := c.byHost[in.HostID]
	fail := func(format string, args ...any) (*standby.Sandbox, error) {
		// Clean up even when ctx is what ended.
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer ccancel()
		if err := a.StopInstance(cctx, in.ID); err != nil {
			log.Warn("stop cold-start instance", "err", err)
		}
		if err := c.deleteInstance(cctx, in.ID); err != nil {
			log.Warn("delete cold-start instance", "err", err)
		}
		msg := fmt.Sprintf(format, args...)
		log.Info("cold start failed", "reason", msg)
		return nil, standby.Errorf(standby.EUnavailable, "cold start of %s failed: %s", build.CanonicalRef, msg)
	}

	info, err := a.StartInstance(ctx, standby.InstanceSpec{
		ID:        in.ID,
		ProjectID: sb.ProjectID,
		Build:     build,
		Env:       env,
		Resources: sb.Config.FillFrom(build.Resources),
	})
	if err != nil {
		return fail("start instance: %v", err)
	}
	select {
	case ev := <-events:
		if ev.Type != standby.EventReady {
			return fail("instance %s", ev.Reason)
		}
	case <-ctx.Done():
		return fail("instance not ready in time: %v", ctx.Err())
	}

	now := c.clock.Now()
	sb.InstanceID = in.ID
	sb.HostID = in.HostID
	sb.Address = info.Address
	sb.Ports = info.Ports
	if sb.Ports == nil {
		sb.Ports = map[string]int{}
	}
	sb.TemplateBuildID = build.ID
	sb.StartedAt = now
	if sb.State == "" {
		sb.State = standby.SandboxRunning
	}
	if sb.ExpiresAt.IsZero() && sb.TimeoutMS > 0 {
		sb.ExpiresAt = now.Add(time.Duration(sb.TimeoutMS) * time.Millisecond)
	}
	if err := c.store.CreateSandbox(ctx, sb); err != nil {
		if standby.ErrorCode(err) == standby.EInternal {
			_, _ = fail("store sandbox: %v", err)
			return nil, fmt.Errorf("store cold-started sandbox: %w", err)
		}
		return fail("store sandbox: %v", err)
	}
	log.Info("cold start done", "host", in.HostID)
	return sb, nil
}

// placeColdInstance picks the host with the most room and stores a warming
// instance without a pool on it.
func (c *Controller) placeColdInstance(ctx context.Context, sb *standby.Sandbox, build *standby.Build) (*standby.Instance, error) {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	hosts, err := c.hostSlots(ctx)
	if err != nil {
		return nil, err
	}
	h := -1
	for i := range hosts {
		if hosts[i].Free != 0 && (h < 0 || freeer(hosts[i].Free, hosts[h].Free)) {
			h = i
		}
	}
	if h < 0 {
		return nil, standby.Errorf(standby.EUnavailable, "no host has room for a cold start")
	}
	in := &standby.Instance{
		ID:              standby.NewID(standby.PrefixInstance),
		ProjectID:       sb.ProjectID,
		State:           standby.InstanceWarming,
		TemplateBuildID: build.ID,
		HostID:          hosts[h].ID,
		Ports:           map[string]int{},
		Labels:          map[string]string{},
		Annotations:     map[string]string{},
		CreatedAt:       c.clock.Now(),
	}
	if err := c.store.CreateInstance(ctx, in); err != nil {
		return nil, fmt.Errorf("store cold-start instance: %w", err)
	}
	return in, nil
}
