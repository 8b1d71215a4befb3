package agent

import (
	"context"
	"syscall"
	"time"
)

// groupPoll is how often a stop checks whether the group is gone.
const groupPoll = 10 * time.Millisecond

// StopInstance stops the instance's whole process group: SIGTERM, then
// SIGKILL after StopGrace, and returns once no process of the group runs.
// It reports no event for the instance and deletes its state file; its logs
// stay readable. An instance that is not running is no error. If ctx ends
// first, the group is killed at once and ctx's error returned. A stop
// that comes while the instance starts waits for the start to be over.
func (a *Local) StopInstance(ctx context.Context, id string) error {
	a.mu.Lock()
	if starting := a.pending[id]; starting != nil {
		a.mu.Unlock()
		select {
		case <-starting:
		case <-ctx.Done():
			return ctx.Err()
		}
		a.mu.Lock()
	}
	inst := a.running[id]
	if inst == nil {
		a.mu.Unlock()
		return nil
	}
	inst.stopping = true
	a.mu.Unlock()
	inst.cancel()
	a.log.Info("stopping instance", "instance", id, "pid", inst.pid)

	killGroup(inst.pid, syscall.SIGTERM)
	graceCtx, cancel := context.WithTimeout(ctx, a.cfg.StopGrace)
	err := a.waitGone(graceCtx, inst)
	cancel()
	if err != nil {
		killGroup(inst.pid, syscall.SIGKILL)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.log.Info("instance ignored SIGTERM; killed it", "instance", id, "grace", a.cfg.StopGrace)
		if err := a.waitGone(ctx, inst); err != nil {
			return err
		}
	}
	if first, _ := a.end(inst); first {
		a.finish(inst)
	} else {
		<-inst.endCh // its exit was noticed first: wait for the teardown
	}
	return nil
}

// waitGone returns nil once the main process has ended and no process of
// its group runs, or ctx's error.
func (a *Local) waitGone(ctx context.Context, inst *instance) error {
	t := time.NewTicker(groupPoll)
	defer t.Stop()
	for {
		if a.mainGone(inst) && inst.groupGone() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-inst.exited:
		case <-t.C:
		}
	}
}

// groupGone reports whether no live process of the instance is left: for
// an isolated instance, when its cgroup is empty (one small read; exited
// processes leave it before they are reaped); else when no process of
// its group runs. Asking the kernel first spares the scan of /proc that
// tells a group of zombies from a live one: a stop polls every groupPoll,
// and scanning /proc costs in proportion to every process on the host.
func (inst *instance) groupGone() bool {
	if inst.iso != nil {
		if cg, err := inst.iso.cgroup(); err == nil {
			return len(cg.procs()) == 0
		}
	}
	if syscall.Kill(-inst.pid, 0) == syscall.ESRCH {
		return true
	}
	return !groupAlive(inst.pid)
}

// mainGone reports whether the instance's main process has ended. While
// the agent runs, its waiter closes exited (after reaping a child); after
// shutdown there is no waiter, so /proc is asked.
func (a *Local) mainGone(inst *instance) bool {
	select {
	case <-inst.exited:
		return true
	default:
	}
	if a.base.Err() != nil && procGone(inst.pid, inst.startTick) {
		reap(inst.pid)
		return true
	}
	return false
}
