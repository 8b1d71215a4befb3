package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runQueue(t *testing.T, q *workqueue) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		q.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestWorkqueueDedupesAndNeverRunsAKeyTwiceAtOnce(t *testing.T) {
	var mu sync.Mutex
	running := map[string]int{}
	calls := map[string]int{}
	release := make(chan struct{})
	started := make(chan string, 10)
	q := newWorkqueue(4, time.Millisecond, time.Second, quietLogger(), func(ctx context.Context, key string) error {
		mu.Lock()
		running[key]++
		calls[key]++
		if running[key] > 1 {
			t.Errorf("key %s handled twice at once", key)
		}
		mu.Unlock()
		started <- key
		<-release
		mu.Lock()
		running[key]--
		mu.Unlock()
		return nil
	})
	// Before any worker runs, repeated adds collapse to one item per key.
	for range 3 {
		q.Add("a")
		q.Add("b")
	}
	runQueue(t, q)
	first := map[string]bool{<-started: true, <-started: true}
	if !first["a"] || !first["b"] {
		t.Fatalf("first runs = %v, want a and b", first)
	}
	// While a is handled, adding it many times queues exactly one more run,
	// which waits until the first ends.
	for range 5 {
		q.Add("a")
	}
	select {
	case k := <-started:
		t.Fatalf("%s started while both keys are being handled", k)
	default:
	}
	close(release)
	if k := <-started; k != "a" {
		t.Fatalf("started %q, want a again", k)
	}
	waitFor(t, "queue to drain", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return running["a"] == 0 && running["b"] == 0 && q.Len() == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if calls["a"] != 2 || calls["b"] != 1 {
		t.Fatalf("calls = %v, want a:2 b:1", calls)
	}
}

func TestWorkqueueRetriesWithBackoff(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	q := newWorkqueue(2, 20*time.Millisecond, time.Second, quietLogger(), func(ctx context.Context, key string) error {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) < 4 {
			return errors.New("boom")
		}
		return nil
	})
	runQueue(t, q)
	q.Add("k")
	waitFor(t, "four attempts", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(at) >= 4
	})
	mu.Lock()
	// Gaps are at least 20, 40, 80 ms: the retries back off.
	for i, want := range []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond} {
		if gap := at[i+1].Sub(at[i]); gap < want {
			t.Errorf("retry %d after %v, want at least %v", i+1, gap, want)
		}
	}
	mu.Unlock()
	waitFor(t, "failures reset after success", 5*time.Second, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.failures["k"] == 0
	})
}

func TestWorkqueueAddAfterAndShutdown(t *testing.T) {
	got := make(chan string, 1)
	q := newWorkqueue(1, time.Millisecond, time.Second, quietLogger(), func(ctx context.Context, key string) error {
		got <- key
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		q.Run(ctx)
		close(done)
	}()
	q.AddAfter("later", 10*time.Millisecond)
	select {
	case k := <-got:
		if k != "later" {
			t.Fatalf("got %q", k)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AddAfter key never handled")
	}
	q.AddAfter("never", time.Hour)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	q.Add("x") // after shutdown: ignored, must not block
	if q.Len() != 0 {
		t.Fatalf("queue holds %d keys after shutdown", q.Len())
	}
}

func TestWorkqueueAddSoonCoalescesABurst(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	handled := make(chan struct{}, 100)
	q := newWorkqueue(2, time.Millisecond, time.Second, quietLogger(), func(ctx context.Context, key string) error {
		mu.Lock()
		calls++
		mu.Unlock()
		handled <- struct{}{}
		return nil
	})
	// The burst is queued before the workers run, and with an hour's
	// delay, so nothing can fire between the calls.
	for range 50 {
		q.AddSoon("pool/a", time.Hour)
	}
	q.mu.Lock()
	pending := len(q.timers)
	q.mu.Unlock()
	if pending != 1 {
		t.Fatalf("a burst of 50 AddSoon left %d timers, want 1", pending)
	}
	// A key already waiting in the queue needs no timer.
	q.Add("pool/b")
	q.AddSoon("pool/b", time.Hour)
	q.mu.Lock()
	pending = len(q.timers)
	q.mu.Unlock()
	if pending != 1 {
		t.Fatalf("AddSoon of a queued key added a timer: %d timers", pending)
	}
	runQueue(t, q)
	<-handled // pool/b
	q.AddSoon("pool/c", time.Millisecond)
	q.AddSoon("pool/c", time.Millisecond)
	<-handled // pool/c, once
	waitFor(t, "the soon timer of pool/c to clear", 5*time.Second, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return !q.soon["pool/c"]
	})
	q.AddSoon("pool/c", time.Millisecond) // after the handling: a new look
	<-handled
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 {
		t.Fatalf("handled %d times, want 3 (pool/b, pool/c twice)", calls)
	}
}
