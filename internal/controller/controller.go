// Package controller keeps standby's desired state: it fills warm pools to
// their target, rolls them to a new resolved build surge-first, backs off on
// repeated start failures, records agent events (ready, failed) in the
// store, stops the instances of ended sandboxes, expires sandboxes, and
// cold-starts instances for the api.
//
// Deciding is split from doing: plan (pure) decides what a pool needs, and
// syncPool applies it. Work goes through a keyed, deduplicating queue woken
// by the api, by agent events and by a periodic resync.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/standbyhq/standby"
)

// Config holds the controller's dependencies and knobs.
type Config struct {
	// Store is where desired and observed state live. Required.
	Store standby.Store
	// Agents run instances, one per host. At least one is required.
	Agents []standby.Agent
	// Clock tells the time; default standby.SystemClock.
	Clock standby.Clock
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Resync is how often every pool is looked at even without a wake;
	// default 2s.
	Resync time.Duration
	// MaxParallelStarts bounds instances being started at once; default
	// DefaultMaxParallelStarts().
	MaxParallelStarts int
	// BackoffBase and BackoffMax bound the pause after consecutive start
	// failures of a pool: base×2^(n-1) capped at max; default 1s and 5m.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// FailedRetention is how long failed instances are kept (they count in
	// status.failed); default 1h.
	FailedRetention time.Duration
	// ColdStartTimeout bounds one cold start; default 60s.
	ColdStartTimeout time.Duration
}

// Work queue key prefixes.
const (
	keyPool    = "pool/"
	keySandbox = "sandbox/"
)

// workers is how many keys are handled at once.
const workers = 4

// sandboxSweep is how often running sandboxes are checked for expiry, so a
// sandbox expires within about a second of expires_at.
const sandboxSweep = time.Second

// liveStates returns the instance states that hold (or may hold) a
// process.
func liveStates() []string {
	return []string{standby.InstanceWarming, standby.InstanceReady, standby.InstanceClaimed, standby.InstanceDraining}
}

// poolMemory is what the controller remembers about a pool between looks.
type poolMemory struct {
	failures    int
	lastFailure time.Time
	// streak is the failure count the last ready event after failures
	// reset; until streakUntil it still counts, so readiness that proves
	// hollow (the instance dies right after) neither lifts the backoff
	// nor restarts the count: a build that passes its check and then
	// crashes still backs off instead of spinning.
	streak      int
	streakUntil time.Time
	// ready are the ready instances seen at the last look; one that is
	// neither ready, draining nor failed now was checked out.
	ready     map[string]bool
	seen      bool
	checkouts []time.Time
}

// Controller reconciles pools and sandboxes. Create it with New and start
// it with Run.
type Controller struct {
	store  standby.Store
	agents []standby.Agent
	byHost map[string]standby.Agent
	clock  standby.Clock
	logger *slog.Logger
	cfg    Config

	queue *workqueue
	sem   chan struct{}
	// While checkouts stream in (one within checkoutStream), starts pass
	// burstGate one at a time: a refill's start costs milliseconds of CPU
	// in the agent and the new instance's init, and 32 of them at once
	// took the CPU the checkouts needed. The pool still refills, one
	// start at a time, and at full speed once the burst is over.
	burstGate    chan struct{}
	lastCheckout atomic.Int64 // unix ns of the latest checkout
	bg           sync.WaitGroup
	// placeMu makes counting a host's instances and creating new ones one
	// step, so concurrent looks never overfill a host.
	placeMu sync.Mutex

	mu       sync.Mutex
	ready    chan struct{}
	pools    map[string]*poolMemory
	stopping map[string]bool // instance ids with a stop in flight
	waiters  map[string]chan standby.InstanceEvent
	runCtx   context.Context
	closed   bool // Run is finishing: no new background goroutines
	// started is closed once Run reconciled the store with the agents;
	// cold starts wait for it, as reconciliation would take their fresh
	// instance for lost or orphaned.
	started chan struct{}
}

// New checks cfg, fills its defaults and returns a controller.
func New(cfg Config) (*Controller, error) {
	if cfg.Store == nil {
		return nil, errors.New("controller: Store is required")
	}
	if len(cfg.Agents) == 0 {
		return nil, errors.New("controller: at least one agent is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = standby.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 2 * time.Second
	}
	if cfg.MaxParallelStarts <= 0 {
		cfg.MaxParallelStarts = DefaultMaxParallelStarts()
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		return nil, fmt.Errorf("controller: BackoffMax %v is below BackoffBase %v", cfg.BackoffMax, cfg.BackoffBase)
	}
	if cfg.FailedRetention <= 0 {
		cfg.FailedRetention = time.Hour
	}
	if cfg.ColdStartTimeout <= 0 {
		cfg.ColdStartTimeout = 60 * time.Second
	}
	c := &Controller{
		store:     cfg.Store,
		agents:    cfg.Agents,
		byHost:    map[string]standby.Agent{},
		clock:     cfg.Clock,
		logger:    cfg.Logger,
		cfg:       cfg,
		sem:       make(chan struct{}, cfg.MaxParallelStarts),
		burstGate: make(chan struct{}, 1),
		ready:     make(chan struct{}),
		pools:     map[string]*poolMemory{},
		stopping:  map[string]bool{},
		waiters:   map[string]chan standby.InstanceEvent{},
		started:   make(chan struct{}),
	}
	for i, a := range cfg.Agents {
		if a == nil {
			return nil, fmt.Errorf("controller: agent %d is nil", i)
		}
		id := a.Host().ID
		if id == "" {
			return nil, fmt.Errorf("controller: agent %d has a host without id", i)
		}
		if _, dup := c.byHost[id]; dup {
			return nil, fmt.Errorf("controller: two agents for host %s", id)
		}
		c.byHost[id] = a
	}
	c.queue = newWorkqueue(workers, 250*time.Millisecond, min(cfg.BackoffMax, time.Minute), cfg.Logger, c.handle)
	return c, nil
}

// Run reconciles until ctx is done, then returns once every goroutine it
// started has stopped. It first records the hosts and reconciles the store
// with what each agent really runs.
func (c *Controller) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("controller: Run called twice")
	}
	c.runCtx = ctx
	c.mu.Unlock()

	if err := c.start(ctx); err != nil {
		c.finish()
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	close(c.started)

	var wg sync.WaitGroup
	for _, a := range c.agents {
		wg.Go(func() { c.readEvents(ctx, a) })
	}
	wg.Go(func() { c.queue.Run(ctx) })

	c.resync(ctx)
	c.sweepSandboxes(ctx)
	resync := time.NewTicker(c.cfg.Resync)
	sweep := time.NewTicker(sandboxSweep)
	defer resync.Stop()
	defer sweep.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-resync.C:
			c.resync(ctx)
		case <-sweep.C:
			c.sweepSandboxes(ctx)
		}
	}
	wg.Wait()
	c.finish()
	return nil
}

// start records the hosts and reconciles the store with what each agent
// runs.
func (c *Controller) start(ctx context.Context) error {
	if err := c.upsertHosts(ctx); err != nil {
		return err
	}
	for _, a := range c.agents {
		if err := c.reconcileAgent(ctx, a); err != nil {
			return fmt.Errorf("reconcile host %s: %w", a.Host().ID, err)
		}
	}
	return nil
}

// WakePool asks for a look at a pool now. It never blocks.
func (c *Controller) WakePool(poolID string) { c.queue.Add(keyPool + poolID) }

// burstDelay is how long a look at a pool waits after a checkout took one
// of its instances or one of its instances became ready: a burst of
// either costs one look (listing the pool, counting hosts, writing
// status) instead of one per event, and the look still comes within a
// few milliseconds of the first. A warming pool of 100 used to be looked
// at 100 times, listing all its instances each time.
const burstDelay = 15 * time.Millisecond

// PoolCheckedOut tells the controller a checkout took an instance of the
// pool: it looks at the pool shortly, once per burst. It never blocks.
func (c *Controller) PoolCheckedOut(poolID string) {
	c.lastCheckout.Store(time.Now().UnixNano())
	c.queue.AddSoon(keyPool+poolID, burstDelay)
}

// checkoutStream is how recent a checkout makes starts wait at burstGate.
const checkoutStream = 20 * time.Millisecond

// checkoutsStreaming reports whether a checkout came within
// checkoutStream (wall time: a heuristic for sharing the CPU, not a
// deadline).
func (c *Controller) checkoutsStreaming() bool {
	return time.Since(time.Unix(0, c.lastCheckout.Load())) < checkoutStream
}

// WakeSandbox asks to act on a sandbox's state now. It never blocks.
func (c *Controller) WakeSandbox(sandboxID string) { c.queue.Add(keySandbox + sandboxID) }

// WakeAll asks for a look at every pool now. It returns at once; the pools
// are listed in the background.
func (c *Controller) WakeAll() {
	c.mu.Lock()
	ctx := c.runCtx
	c.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return // Run's first resync looks at every pool anyway
	}
	c.goBackground(func() { c.wakePools(ctx) })
}

// Ready returns a channel closed at the next instance-ready event in any
// pool.
func (c *Controller) Ready() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// Agent returns the agent of a host.
func (c *Controller) Agent(hostID string) (standby.Agent, bool) {
	a, ok := c.byHost[hostID]
	return a, ok
}

func (c *Controller) signalReady() {
	c.mu.Lock()
	close(c.ready)
	c.ready = make(chan struct{})
	c.mu.Unlock()
}

// goBackground runs f in a goroutine Run waits for; once Run is
// finishing it drops f.
func (c *Controller) goBackground(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.bg.Go(f)
}

// finish waits for the background goroutines; none start after it.
func (c *Controller) finish() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.bg.Wait()
}

func (c *Controller) handle(ctx context.Context, key string) error {
	switch {
	case strings.HasPrefix(key, keyPool):
		return c.syncPool(ctx, strings.TrimPrefix(key, keyPool))
	case strings.HasPrefix(key, keySandbox):
		return c.syncSandbox(ctx, strings.TrimPrefix(key, keySandbox))
	}
	c.logger.Error("unknown work key", "key", key)
	return nil
}

// resync records host heartbeats, forgets old failed instances and looks at
// every pool and every sandbox being stopped.
func (c *Controller) resync(ctx context.Context) {
	if err := c.upsertHosts(ctx); err != nil && ctx.Err() == nil {
		c.logger.Warn("record hosts", "err", err)
	}
	now := c.clock.Now()
	if n, err := c.store.DeleteFailedInstances(ctx, now.Add(-c.cfg.FailedRetention)); err != nil && ctx.Err() == nil {
		c.logger.Warn("delete failed instances", "err", err)
	} else if n > 0 {
		c.logger.Debug("deleted failed instances", "count", n)
	}
	c.wakePools(ctx)
	c.wakeSandboxes(ctx, standby.SandboxFilter{States: []string{standby.SandboxStopping}})
}

// sweepSandboxes queues running sandboxes past expires_at.
func (c *Controller) sweepSandboxes(ctx context.Context) {
	now := c.clock.Now()
	c.wakeSandboxes(ctx, standby.SandboxFilter{States: []string{standby.SandboxRunning}, ExpiresBefore: &now})
}

func (c *Controller) wakeSandboxes(ctx context.Context, f standby.SandboxFilter) {
	for {
		sbs, next, err := c.store.FindSandboxes(ctx, f)
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Warn("list sandboxes", "err", err)
			}
			return
		}
		for _, sb := range sbs {
			c.WakeSandbox(sb.ID)
		}
		if next == "" {
			return
		}
		f.Page = standby.Page{Size: standby.MaxPageSize, Token: next}
	}
}

// wakePools queues every pool that may need work: every pool not deleted,
// and deleted ones still holding unclaimed instances.
func (c *Controller) wakePools(ctx context.Context) {
	f := standby.WarmPoolFilter{IncludeDeleted: true, Page: standby.Page{Size: standby.MaxPageSize}}
	for {
		pools, next, err := c.store.FindWarmPools(ctx, f)
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Warn("list pools", "err", err)
			}
			return
		}
		for _, p := range pools {
			if p.State == standby.PoolDeleted && p.Status.Ready+p.Status.Warming+p.Status.Draining == 0 {
				continue
			}
			c.WakePool(p.ID)
		}
		if next == "" {
			return
		}
		f.Page.Token = next
	}
}

func (c *Controller) upsertHosts(ctx context.Context) error {
	now := c.clock.Now()
	for _, a := range c.agents {
		h := a.Host()
		if h.State == "" {
			h.State = standby.HostUp
		}
		if h.CreatedAt.IsZero() {
			if old, err := c.store.FindHost(ctx, h.ID); err == nil {
				h.CreatedAt = old.CreatedAt
			} else {
				h.CreatedAt = now
			}
		}
		h.LastHeartbeatAt = now
		if err := c.store.UpsertHost(ctx, &h); err != nil {
			return fmt.Errorf("record host %s: %w", h.ID, err)
		}
	}
	return nil
}

// findInstances returns every instance matching f, over all pages.
func (c *Controller) findInstances(ctx context.Context, f standby.InstanceFilter) ([]*standby.Instance, error) {
	var all []*standby.Instance
	f.Page = standby.Page{Size: standby.MaxPageSize}
	for {
		page, next, err := c.store.FindInstances(ctx, f)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		f.Page.Token = next
	}
}

// hostSlots returns every host with how many more instances it takes.
// Call with placeMu held.
func (c *Controller) hostSlots(ctx context.Context) ([]planHost, error) {
	var hosts []planHost
	for _, a := range c.agents {
		h := a.Host()
		if h.State != "" && h.State != standby.HostUp {
			continue
		}
		free := -1
		if h.MaxInstances > 0 {
			// A count, not a list: under a checkout burst the host holds
			// thousands of claimed instances.
			live, err := c.store.CountInstances(ctx, standby.InstanceFilter{HostID: h.ID, States: liveStates()})
			if err != nil {
				return nil, fmt.Errorf("count instances of host %s: %w", h.ID, err)
			}
			free = max(0, h.MaxInstances-live)
		}
		hosts = append(hosts, planHost{ID: h.ID, HostPoolID: h.HostPoolID, CellID: h.CellID, Free: free})
	}
	return hosts, nil
}

// effectiveFailures is the consecutive start failures that count at now.
func (m *poolMemory) effectiveFailures(now time.Time) int {
	if now.Before(m.streakUntil) {
		return max(m.failures, m.streak)
	}
	return m.failures
}

// readyAfter records a ready instance of the pool: the failure count
// resets, its streak lingers for earlyDeath.
func (m *poolMemory) readyAfter(now time.Time) {
	if m.failures > 0 {
		m.streak, m.streakUntil = m.failures, now.Add(earlyDeath)
	}
	m.failures = 0
}

// memory returns the controller's memory of a pool. Call with mu held.
func (c *Controller) memory(poolID string) *poolMemory {
	m := c.pools[poolID]
	if m == nil {
		m = &poolMemory{ready: map[string]bool{}}
		c.pools[poolID] = m
	}
	return m
}

// earlyDeath is how soon after readiness a death still counts as a failed
// start.
const earlyDeath = 10 * time.Second

// startFailed counts a start failure of a pool.
func (c *Controller) startFailed(poolID string) {
	if poolID == "" {
		return
	}
	c.mu.Lock()
	m := c.memory(poolID)
	now := c.clock.Now()
	m.failures = m.effectiveFailures(now) + 1
	m.lastFailure = now
	n := m.failures
	c.mu.Unlock()
	c.logger.Info("instance failed to start", "pool", poolID, "consecutive_failures", n)
}

// stopInstance stops an instance's process on its host; an unknown host
// has nothing we can stop.
func (c *Controller) stopInstance(ctx context.Context, in *standby.Instance) error {
	a, ok := c.byHost[in.HostID]
	if !ok {
		c.logger.Warn("instance on unknown host, dropping its record", "instance", in.ID, "host", in.HostID)
		return nil
	}
	if err := a.StopInstance(ctx, in.ID); err != nil {
		return fmt.Errorf("stop instance %s: %w", in.ID, err)
	}
	return nil
}

// deleteInstance removes an instance's row; a row already gone is fine.
func (c *Controller) deleteInstance(ctx context.Context, id string) error {
	if err := c.store.DeleteInstance(ctx, id); err != nil && !standby.IsCode(err, standby.ENotFound) {
		return fmt.Errorf("delete instance %s: %w", id, err)
	}
	return nil
}

// finishStop stops a draining instance's process and deletes its row, in
// the background, once per instance at a time.
func (c *Controller) finishStop(ctx context.Context, in *standby.Instance) {
	c.mu.Lock()
	if c.stopping[in.ID] {
		c.mu.Unlock()
		return
	}
	c.stopping[in.ID] = true
	c.mu.Unlock()
	c.goBackground(func() {
		defer func() {
			c.mu.Lock()
			delete(c.stopping, in.ID)
			c.mu.Unlock()
		}()
		err := c.stopInstance(ctx, in)
		if err == nil {
			err = c.deleteInstance(ctx, in.ID)
		}
		if err != nil {
			if ctx.Err() == nil {
				// The next resync tries again.
				c.logger.Warn("stop draining instance", "instance", in.ID, "err", err)
			}
			return
		}
		if in.PoolID != "" {
			c.WakePool(in.PoolID)
		}
	})
}

// DefaultMaxParallelStarts is how many instances are started at once by
// default: 16 per core. A start mostly waits (namespace and mount set-up,
// the first readiness probes) rather than computes, so a few per core
// would leave the machine idle while a pool warms.
func DefaultMaxParallelStarts() int { return 16 * runtime.NumCPU() }
