package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// workqueue is a keyed, deduplicating work queue in the style of agones'
// workerqueue: a key added many times before a worker takes it is handled
// once; a key added while a worker handles it is handled again afterwards
// (never by two workers at once); a handler error retries the key after a
// per-key exponential backoff, so a failing key never spins.
type workqueue struct {
	handle  func(ctx context.Context, key string) error
	logger  *slog.Logger
	base    time.Duration
	max     time.Duration
	workers int

	mu         sync.Mutex
	cond       *sync.Cond
	queue      []string
	queued     map[string]bool // in queue, or to be re-queued when processing ends
	processing map[string]bool
	failures   map[string]int
	timers     map[*time.Timer]struct{}
	// soon holds the keys with an AddSoon timer pending.
	soon     map[string]bool
	shutdown bool
}

func newWorkqueue(workers int, base, max time.Duration, logger *slog.Logger, handle func(ctx context.Context, key string) error) *workqueue {
	q := &workqueue{
		handle:     handle,
		logger:     logger,
		base:       base,
		max:        max,
		workers:    workers,
		queued:     map[string]bool{},
		processing: map[string]bool{},
		failures:   map[string]int{},
		timers:     map[*time.Timer]struct{}{},
		soon:       map[string]bool{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key. It never blocks.
func (q *workqueue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown || q.queued[key] {
		return
	}
	q.queued[key] = true
	if q.processing[key] {
		return // done() queues it again
	}
	q.queue = append(q.queue, key)
	q.cond.Signal()
}

// AddAfter queues key once d has passed.
func (q *workqueue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		q.mu.Lock()
		delete(q.timers, t)
		q.mu.Unlock()
		q.Add(key)
	})
	q.timers[t] = struct{}{}
}

// AddSoon queues key after d unless a handling that starts after this call
// is already due (the key waits in the queue, or is queued to run again
// after the handling in progress) or an earlier AddSoon's timer is
// pending: a burst of calls costs one handling of the key, at most d after
// the first. A key only being handled right now still gets its timer, as
// that handler may have looked before the call's cause happened.
func (q *workqueue) AddSoon(key string, d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown || q.soon[key] || q.queued[key] {
		return
	}
	q.soon[key] = true
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		q.mu.Lock()
		delete(q.timers, t)
		delete(q.soon, key)
		q.mu.Unlock()
		q.Add(key)
	})
	q.timers[t] = struct{}{}
}

// Len returns how many keys wait to be handled.
func (q *workqueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

func (q *workqueue) get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.queue) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	key := q.queue[0]
	q.queue = q.queue[1:]
	delete(q.queued, key)
	q.processing[key] = true
	return key, true
}

func (q *workqueue) done(key string, err error) {
	q.mu.Lock()
	delete(q.processing, key)
	var retry time.Duration
	if err != nil {
		q.failures[key]++
		retry = backoff(q.base, q.max, q.failures[key])
	} else {
		delete(q.failures, key)
	}
	if q.queued[key] && !q.shutdown {
		q.queue = append(q.queue, key)
		q.cond.Signal()
	}
	q.mu.Unlock()
	if err != nil {
		q.logger.Warn("work failed, retrying", "key", key, "retry_in", retry, "err", err)
		q.AddAfter(key, retry)
	}
}

// Run starts the workers and returns once ctx is done and every worker has
// finished the key it was handling.
func (q *workqueue) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range q.workers {
		wg.Go(func() {
			for {
				key, ok := q.get()
				if !ok {
					return
				}
				q.done(key, q.handle(ctx, key))
			}
		})
	}
	<-ctx.Done()
	q.mu.Lock()
	q.shutdown = true
	for t := range q.timers {
		t.Stop()
	}
	clear(q.timers)
	clear(q.soon)
	q.cond.Broadcast()
	q.mu.Unlock()
	wg.Wait()
}

// backoff returns base×2^(n-1) capped at max, for the n-th consecutive
// failure (n >= 1).
func backoff(base, max time.Duration, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := base
	for i := 1; i < n; i++ {
		d *= 2
		if d >= max || d <= 0 {
			return max
		}
	}
	return min(d, max)
}
