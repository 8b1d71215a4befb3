package agent

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/standbyhq/standby"
)

// Health reasons reported in failed events.
const (
	reasonReadinessTimeout = "readiness check timed out"
	reasonHealthFailed     = "health check failed"
	reasonLost             = "lost while agent was down"
)

// livenessFailures is how many liveness probes in a row must fail before
// the instance counts as failed.
const livenessFailures = 3

// firstProbeDelay is the readiness poll's first gap; it doubles up to the
// check's interval, so a fast starter is seen ready within milliseconds.
const firstProbeDelay = 2 * time.Millisecond

// monitor runs the instance's readiness check, then its liveness check,
// and reports the outcome. It is the only sender of the instance's events,
// so ready always comes before failed. It returns at shutdown (leaving the
// process running), when the instance is stopped, or once it has ended.
func (a *Local) monitor(inst *instance) {
	// inst.ctx ends at shutdown and at a stop, which also ends any probe
	// in flight.
	ctx := inst.ctx
	a.mu.Lock()
	ready := inst.ready
	a.mu.Unlock()
	if !ready {
		if !a.awaitReady(ctx, inst) {
			return
		}
	}
	if inst.liveness.Type == standby.CheckProcess {
		// Nothing to probe: the waiter alone watches the process, so a
		// ready instance holds one goroutine and no timer, not two and
		// one. The waiter acts on the exit, or this does when the
		// process ended during the hand-over (exited is idempotent).
		a.mu.Lock()
		inst.unwatched = true
		a.mu.Unlock()
		select {
		case <-inst.exited:
			a.exited(inst, "")
		default:
		}
		return
	}
	interval := seconds(inst.liveness.Data.Interval)
	t := time.NewTimer(interval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-inst.exited:
			a.exited(inst, "")
			return
		case <-t.C:
		}
		if a.probe(ctx, inst, inst.liveness) {
			failures = 0
		} else if ctx.Err() == nil {
			failures++
			a.log.Debug("liveness probe failed", "instance", inst.id, "failures", failures)
			if failures >= livenessFailures {
				a.kill(inst, reasonHealthFailed)
				return
			}
		}
		t.Reset(interval)
	}
}

// awaitReady probes until the readiness check passes (true), the check's
// timeout passes, or the process ends.
func (a *Local) awaitReady(ctx context.Context, inst *instance) bool {
	check := inst.readiness
	deadline := inst.startedAt.Add(seconds(check.Data.Timeout))
	maxDelay := seconds(check.Data.Interval)
	delay := firstProbeDelay
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-inst.exited:
			a.exited(inst, "")
			return false
		case <-t.C:
		}
		if a.probe(ctx, inst, check) {
			break
		}
		if ctx.Err() != nil {
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			a.kill(inst, reasonReadinessTimeout)
			return false
		}
		t.Reset(min(delay, left))
		delay = min(delay*2, maxDelay)
	}
	a.mu.Lock()
	if inst.ended || inst.stopping {
		a.mu.Unlock()
		return false
	}
	inst.ready = true
	info := inst.infoLocked()
	a.mu.Unlock()
	inst.fileMu.Lock()
	a.mu.Lock()
	stillRunning := !inst.ended && !inst.stopping
	a.mu.Unlock()
	if stillRunning {
		if err := inst.writeState(true); err != nil {
			a.log.Error("cannot record readiness", "instance", inst.id, "err", err)
		}
	}
	inst.fileMu.Unlock()
	a.log.Info("instance ready", "instance", inst.id, "after", time.Since(inst.startedAt).Round(time.Millisecond))
	ev := a.event(inst.id, standby.EventReady, "")
	ev.Address, ev.Ports = info.Address, info.Ports
	a.send(ev, inst.ctx.Done())
	return true
}

// probe runs one check, bounded by its invocation timeout.
func (a *Local) probe(ctx context.Context, inst *instance, check standby.HealthCheck) bool {
	select {
	case <-inst.exited:
		return false
	default:
	}
	if check.Type == standby.CheckProcess {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, seconds(check.Data.InvocationTimeout))
	defer cancel()
	port := 0
	if b := inst.spec.Build; len(b.Ports) > 0 {
		port = inst.ports[b.Ports[0].Name]
	}
	addr := net.JoinHostPort(inst.address, strconv.Itoa(port))
	switch check.Type {
	case standby.CheckPort:
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false
		}
		c.Close()
		return true
	case standby.CheckHTTP:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+check.Data.Endpoint, nil)
		if err != nil {
			return false
		}
		resp, err := a.http.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 300
	default:
		return false
	}
}

// kill ends an instance that failed a check: it kills the whole group,
// waits for the process to go and reports reason (not the signal).
func (a *Local) kill(inst *instance, reason string) {
	a.mu.Lock()
	stopping := inst.stopping
	a.mu.Unlock()
	if stopping {
		return
	}
	select {
	case <-inst.exited:
		// It died on its own: the exit status says more than the check.
		a.exited(inst, "")
		return
	default:
	}
	a.log.Info("instance failed its check; killing it", "instance", inst.id, "reason", reason)
	killGroup(inst.pid, syscall.SIGKILL)
	select {
	case <-inst.exited:
		a.exited(inst, reason)
	case <-a.base.Done():
	}
}

// exited records that the instance's process is gone: out of the running
// set, its ports free, state file removed, and a failed event unless it was
// stopped on request. reason overrides the exit status when a check failed.
func (a *Local) exited(inst *instance, reason string) {
	if reason == "" {
		reason = inst.exitMsg
		if inst.oomKilled() {
			reason = standby.ReasonOOMKilled
		}
	}
	first, stopping := a.end(inst)
	if !first {
		return
	}
	a.finish(inst)
	if stopping {
		inst.cancel()
		return
	}
	a.log.Info("instance failed", "instance", inst.id, "reason", reason)
	a.emit(inst.id, standby.EventFailed, reason, inst.ctx.Done())
	inst.cancel()
}

// finish releases what an ended instance held and forgets it; only the
// caller end told it was first does, and endCh tells the others when it
// is done.
func (a *Local) finish(inst *instance) {
	a.teardown(inst)
	inst.removeState()
	close(inst.endCh)
}

// exitNoticed is how a waiter reports that the main process is gone (its
// exitMsg set): it closes exited, and acts on the exit itself when no
// monitor waits for it anymore.
func (a *Local) exitNoticed(inst *instance) {
	close(inst.exited)
	a.mu.Lock()
	unwatched := inst.unwatched
	a.mu.Unlock()
	if unwatched {
		a.exited(inst, "")
	}
}

// end takes the instance out of the running set once. first is false when
// it had already ended.
func (a *Local) end(inst *instance) (first, stopping bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if inst.ended {
		return false, inst.stopping
	}
	inst.ended = true
	if a.running[inst.id] == inst {
		delete(a.running, inst.id)
		a.freePortsLocked(inst.ports)
	}
	return true, inst.stopping
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }
