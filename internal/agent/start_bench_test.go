package agent

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// benchBatch is how many echo instances one benchmark op starts at once,
// like `standby bench` filling a pool with 32 starts in flight.
const benchBatch = 32

// BenchmarkStartIsolated starts batches of echo instances in parallel and
// waits until every one is ready, with isolation off and on, so the cost
// of isolation per start is measured on the same machine in one run.
// Metrics: inst/s (ready instances per second of wall time), start-ms
// (mean StartInstance latency), ready-ms (mean start-to-ready latency) and
// cpu-ms (CPU time of the agent and the instances' processes per
// instance, their stop included).
func BenchmarkStartIsolated(b *testing.B) {
	for _, mode := range []string{IsolationNone, IsolationOn} {
		b.Run("isolation="+mode, func(b *testing.B) {
			if mode == IsolationOn {
				if os.Geteuid() != 0 {
					b.Skip("isolation needs root")
				}
				if _, _, err := resolveIsolation(IsolationOn); err != nil {
					b.Skipf("isolation unavailable: %v", err)
				}
			}
			ta := startAgent(b, "", func(c *Config) {
				c.Isolation = mode
				c.UIDBase = 400000 + os.Getpid()%1000*100
				c.MaxInstances = 2 * benchBatch
				c.StopGrace = time.Second
			})
			var startNs, readyNs atomic.Int64
			var wall time.Duration
			cpu0 := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				ids := make([]string, benchBatch)
				for i := range ids {
					ids[i] = standby.NewID(standby.PrefixInstance)
				}
				t0 := time.Now()
				var wg sync.WaitGroup
				for _, id := range ids {
					wg.Go(func() {
						s := time.Now()
						_, err := ta.StartInstance(context.Background(), standby.InstanceSpec{ID: id, Build: echoBuild()})
						if err != nil {
							b.Errorf("StartInstance: %v", err)
							return
						}
						startNs.Add(int64(time.Since(s)))
					})
				}
				wg.Wait()
				ta.waitReadyAll(b, ids, t0, &readyNs)
				wall += time.Since(t0)
				b.StopTimer()
				var sw sync.WaitGroup
				for _, id := range ids {
					sw.Go(func() { _ = ta.StopInstance(context.Background(), id) })
				}
				sw.Wait()
				b.StartTimer()
			}
			cpu := cpuTime() - cpu0
			n := float64(b.N * benchBatch)
			b.ReportMetric(n/wall.Seconds(), "inst/s")
			b.ReportMetric(float64(startNs.Load())/n/1e6, "start-ms")
			b.ReportMetric(float64(readyNs.Load())/n/1e6, "ready-ms")
			b.ReportMetric(float64(cpu)/n/1e6, "cpu-ms")
		})
	}
}

// waitReadyAll waits for a ready event of every id and adds each one's
// time since t0 to total.
func (ta *testAgent) waitReadyAll(tb testing.TB, ids []string, t0 time.Time, total *atomic.Int64) {
	tb.Helper()
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	seen := 0
	deadline := time.After(waitTimeout)
	for {
		ta.mu.Lock()
		for _, ev := range ta.events[seen:] {
			if want[ev.InstanceID] && ev.Type == standby.EventReady {
				delete(want, ev.InstanceID)
				total.Add(int64(ev.At.Sub(t0)))
			}
			if want[ev.InstanceID] && ev.Type == standby.EventFailed {
				ta.mu.Unlock()
				tb.Fatalf("instance %s failed: %+v", ev.InstanceID, ev)
			}
		}
		seen = len(ta.events)
		ta.mu.Unlock()
		if len(want) == 0 {
			return
		}
		select {
		case <-ta.notify:
		case <-deadline:
			tb.Fatalf("%d instances not ready", len(want))
		}
	}
}

// cpuTime is the CPU time used by this process and its reaped
// descendants (an instance's processes, once it stopped).
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	d := func(tv syscall.Timeval) time.Duration { return time.Duration(tv.Nano()) }
	return d(self.Utime) + d(self.Stime) + d(kids.Utime) + d(kids.Stime)
}
