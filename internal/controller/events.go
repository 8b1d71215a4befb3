package controller

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/standbyhq/standby"
)

// reasonLost is recorded for instances an agent no longer runs after a
// restart.
const reasonLost = "lost: agent restarted"

// eventWorkers is how many of one agent's events are recorded at once, so
// a burst of them (a pool's instances getting ready together) shares the
// store's commits and fsyncs instead of waiting for one each, in line.
// One instance's events all go to the same worker, in order.
const eventWorkers = 32

// readEvents records one agent's events until its channel closes or ctx is
// done.
func (c *Controller) readEvents(ctx context.Context, a standby.Agent) {
	var wg sync.WaitGroup
	workers := make([]chan standby.InstanceEvent, eventWorkers)
	for i := range workers {
		workers[i] = make(chan standby.InstanceEvent, 16)
		wg.Go(func() {
			for ev := range workers[i] {
				c.handleEvent(ctx, ev)
			}
		})
	}
	defer func() {
		for _, w := range workers {
			close(w)
		}
		wg.Wait()
	}()
	seed := maphash.MakeSeed()
	events := a.Events()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			select {
			case workers[maphash.String(seed, ev.InstanceID)%eventWorkers] <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// handleEvent records an instance event: ready → ready (waking waiters and
// the pool); failed → failed, or the claiming sandbox failed, or a
// draining row deleted.
func (c *Controller) handleEvent(ctx context.Context, ev standby.InstanceEvent) {
	c.mu.Lock()
	if w, ok := c.waiters[ev.InstanceID]; ok {
		select {
		case w <- ev:
		default:
		}
	}
	c.mu.Unlock()

	log := c.logger.With("instance", ev.InstanceID, "event", ev.Type)
	switch ev.Type {
	case standby.EventReady:
		// The update reads the row itself: no lookup before it.
		now := c.clock.Now()
		became := false
		in, err := c.store.UpdateInstance(ctx, ev.InstanceID, func(i *standby.Instance) error {
			if ev.Address != "" {
				i.Address = ev.Address
			}
			if ev.Ports != nil {
				i.Ports = ev.Ports
			}
			switch i.State {
			case standby.InstanceWarming:
				i.State = standby.InstanceReady
				i.ReadyAt = standby.Ptr(now)
				became = true
			case standby.InstanceClaimed:
				if i.ReadyAt == nil {
					i.ReadyAt = standby.Ptr(now)
				}
			default:
				return errStateChanged
			}
			return nil
		})
		if standby.IsCode(err, standby.ENotFound) {
			// Its row went while it started (its pool was deleted, a
			// stop found nothing running yet): nothing else stops it.
			log.Info("stopping orphan instance", "host", ev.HostID)
			c.stopInBackground(ctx, &standby.Instance{ID: ev.InstanceID, HostID: ev.HostID}, false)
			return
		}
		if err != nil {
			if !errors.Is(err, errStateChanged) && ctx.Err() == nil {
				log.Warn("record ready instance", "err", err)
			}
			return
		}
		if in.PoolID == "" {
			return
		}
		c.mu.Lock()
		c.memory(in.PoolID).readyAfter(now)
		c.mu.Unlock()
		if became {
			log.Debug("instance ready", "pool", in.PoolID)
			c.signalReady()
		}
		// Its counts are read from the rows: the look (rollout steps,
		// status) can wait for the rest of the burst.
		c.queue.AddSoon(keyPool+in.PoolID, burstDelay)

	case standby.EventFailed:
		in, err := c.store.FindInstance(ctx, ev.InstanceID)
		if standby.IsCode(err, standby.ENotFound) {
			log.Debug("event for an unknown instance")
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("find instance of event", "err", err)
			}
			return
		}
		c.instanceFailed(ctx, in, ev.Reason)
	}
}

// instanceFailed records that an instance's process failed or is gone.
func (c *Controller) instanceFailed(ctx context.Context, in *standby.Instance, reason string) {
	log := c.logger.With("instance", in.ID, "pool", in.PoolID)
	if reason == "" {
		reason = "failed"
	}
	switch in.State {
	case standby.InstanceWarming, standby.InstanceReady:
		if !c.markFailed(ctx, in.ID, in.State, reason) {
			// It moved on (claimed, draining) meanwhile: look again.
			if cur, err := c.store.FindInstance(ctx, in.ID); err == nil && cur.State != in.State && cur.State != standby.InstanceFailed {
				c.instanceFailed(ctx, cur, reason)
			}
			return
		}
		log.Info("instance failed", "state", in.State, "reason", reason)
		early := in.State == standby.InstanceReady && in.ReadyAt != nil && c.clock.Now().Sub(*in.ReadyAt) < earlyDeath
		if (in.State == standby.InstanceWarming || early) && reason != reasonLost {
			c.startFailed(in.PoolID)
		}
		c.stopInBackground(ctx, in, false) // e.g. a readiness timeout leaves it running
	case standby.InstanceClaimed:
		if in.SandboxID != nil {
			_, err := c.store.UpdateSandbox(ctx, *in.SandboxID, func(s *standby.Sandbox) error {
				if s.Ended() {
					return errStateChanged
				}
				s.State = standby.SandboxFailed
				s.Error = standby.Ptr(reason)
				s.StoppedAt = standby.Ptr(c.clock.Now())
				return nil
			})
			if err != nil && !errors.Is(err, errStateChanged) && !standby.IsCode(err, standby.ENotFound) && ctx.Err() == nil {
				log.Warn("mark sandbox failed", "sandbox", *in.SandboxID, "err", err)
				return // the instance row stays; startup or the sandbox sync retries
			}
			log.Info("sandbox failed", "sandbox", *in.SandboxID, "reason", reason)
		}
		c.stopInBackground(ctx, in, true)
	case standby.InstanceDraining:
		c.finishStop(ctx, in)
	}
	if in.PoolID != "" {
		c.WakePool(in.PoolID)
	}
}

// stopInBackground asks the agent to stop an instance (a no-op when it is
// gone) and, when del, deletes its row afterwards.
func (c *Controller) stopInBackground(ctx context.Context, in *standby.Instance, del bool) {
	c.goBackground(func() {
		err := c.stopInstance(ctx, in)
		if err == nil && del {
			err = c.deleteInstance(ctx, in.ID)
		}
		if err != nil && ctx.Err() == nil {
			c.logger.Warn("stop failed instance", "instance", in.ID, "err", err)
		}
	})
}

// reconcileAgent makes the store agree with what an agent runs after a
// (re)start: rows whose process is gone fail, draining rows finish, ready
// processes of warming rows become ready, processes nobody knows stop.
func (c *Controller) reconcileAgent(ctx context.Context, a standby.Agent) error {
	hostID := a.Host().ID
	infos, err := a.Instances(ctx)
	if err != nil {
		return fmt.Errorf("list agent instances: %w", err)
	}
	running := map[string]standby.InstanceInfo{}
	for _, info := range infos {
		running[info.ID] = info
	}
	rows, err := c.findInstances(ctx, standby.InstanceFilter{HostID: hostID, States: liveStates()})
	if err != nil {
		return fmt.Errorf("list instances of host: %w", err)
	}
	known := map[string]bool{}
	for _, in := range rows {
		known[in.ID] = true
		info, ok := running[in.ID]
		switch {
		case in.State == standby.InstanceDraining:
			if !ok {
				if err := c.deleteInstance(ctx, in.ID); err != nil {
					return err
				}
				continue
			}
			c.finishStop(ctx, in)
		case !ok:
			c.instanceFailed(ctx, in, reasonLost)
		case in.State == standby.InstanceWarming && info.Ready:
			c.handleEvent(ctx, standby.InstanceEvent{InstanceID: in.ID, HostID: hostID, Type: standby.EventReady, At: c.clock.Now()})
		}
	}
	// Failed rows are kept an hour; their processes must not run on.
	failed, err := c.findInstances(ctx, standby.InstanceFilter{HostID: hostID, States: []string{standby.InstanceFailed}})
	if err != nil {
		return fmt.Errorf("list failed instances of host: %w", err)
	}
	for _, in := range failed {
		known[in.ID] = true
		if _, ok := running[in.ID]; ok {
			c.stopInBackground(ctx, in, false)
		}
	}
	for id := range running {
		if !known[id] {
			c.logger.Info("stopping orphan instance", "instance", id, "host", hostID)
			if err := a.StopInstance(ctx, id); err != nil {
				return fmt.Errorf("stop orphan instance %s: %w", id, err)
			}
		}
	}
	return nil
}
