package controller

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/internal/agent"
	"github.com/standbyhq/standby/internal/store/sqlite"
)

// env is a controller over a real SQLite store and a real local agent.
type env struct {
	ctx     context.Context
	store   *sqlite.Store
	agent   *agent.Local
	ctl     *Controller
	project string
	clock   standby.Clock
	// ctlAgent, when set, is the agent the next startController gives
	// the controller instead of agent (a wrapper of it).
	ctlAgent standby.Agent

	stopController func()
}

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	if os.Getenv("STANDBY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quietLogger()
}

func newEnv(t *testing.T, clock standby.Clock) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "standby.db"), Synchronous: "NORMAL"})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })

	// Plain processes: the test binary cannot serve as the isolation init
	// (that is the agent's to test), and the controller does not care.
	ag, err := agent.New(agent.Config{DataDir: filepath.Join(dir, "agent"), HostID: "host_test", StopGrace: time.Second, Logger: testLogger(t),
		Isolation: standby.IsolationNone})
	if err != nil {
		t.Fatalf("new agent: %v", err)
	}
	actx, acancel := context.WithCancel(ctx)
	adone := make(chan error, 1)
	go func() { adone <- ag.Run(actx) }()
	t.Cleanup(func() {
		// Instances outlive the agent by design: stop them first.
		infos, _ := ag.Instances(ctx)
		for _, in := range infos {
			if err := ag.StopInstance(ctx, in.ID); err != nil {
				t.Errorf("stop instance %s: %v", in.ID, err)
			}
		}
		acancel()
		if err := <-adone; err != nil {
			t.Errorf("agent Run: %v", err)
		}
	})

	now := standby.Now()
	p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "test", Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateProject(ctx, p); err != nil {
		t.Fatalf("create project: %v", err)
	}
	tpl := &standby.Template{ID: standby.NewID(standby.PrefixTemplate), ProjectID: p.ID, Name: "sleeper", Labels: map[string]string{}, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := st.CreateTemplate(ctx, tpl); err != nil {
		t.Fatalf("create template: %v", err)
	}
	e := &env{ctx: ctx, store: st, agent: ag, project: p.ID, clock: clock}
	e.startController(t)
	return e
}

// startController starts a new controller over the env's store and agent;
// stopController stops it (a test cleanup does too).
func (e *env) startController(t *testing.T) {
	t.Helper()
	var ag standby.Agent = e.agent
	if e.ctlAgent != nil {
		ag = e.ctlAgent
	}
	ctl, err := New(Config{
		Store: e.store, Agents: []standby.Agent{ag}, Logger: testLogger(t),
		Resync: 200 * time.Millisecond, BackoffBase: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		ColdStartTimeout: 10 * time.Second, Clock: e.clock,
	})
	if err != nil {
		t.Fatalf("new controller: %v", err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- ctl.Run(ctx) }()
	var once sync.Once
	e.ctl = ctl
	e.stopController = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller Run: %v", err)
			}
		})
	}
	t.Cleanup(e.stopController)
}

// build stores a build of template sleeper running cmd, ready when its
// process runs, or with portCheck when it listens on its port "http" (which
// sh never does, so it never gets ready).
func (e *env) build(t *testing.T, cmd string, portCheck bool, tags ...string) *standby.Build {
	t.Helper()
	b := &standby.Build{
		ID: standby.NewID(standby.PrefixBuild), ProjectID: e.project, Template: "sleeper", Status: standby.BuildReady,
		StartCmd:    []string{"sh", "-c", cmd},
		Env:         map[string]string{},
		Files:       map[string]string{},
		Ports:       []standby.Port{},
		HealthCheck: &standby.HealthCheck{Type: standby.CheckProcess, Data: standby.HealthCheckData{Timeout: 5, Interval: 1}},
		Resources:   standby.Resources{VCPUs: 0.1, MemoryMB: 64, DiskMB: 64},
		Tags:        tags,
		CreatedAt:   standby.Now(),
	}
	if portCheck {
		b.Ports = []standby.Port{{Name: "http"}}
		b.ReadinessHealthCheck = &standby.HealthCheck{Type: standby.CheckPort, Data: standby.HealthCheckData{Timeout: 5}}
	}
	b.Seal()
	if err := e.store.CreateBuild(e.ctx, b); err != nil {
		t.Fatalf("create build: %v", err)
	}
	return b
}

func (e *env) pool(t *testing.T, minReady, maxReady int, b *standby.Build, trackTag string) *standby.WarmPool {
	t.Helper()
	now := standby.Now()
	p := &standby.WarmPool{
		ID: standby.NewID(standby.PrefixWarmPool), ProjectID: e.project, Name: "p",
		TemplateRef: "sleeper", MinReady: minReady, MaxReady: maxReady,
		CreatedAt: now, UpdatedAt: now, EnabledAt: &now,
	}
	if trackTag != "" {
		p.VersionPolicy = standby.PolicyTrackTag
		p.TrackTag = standby.Ptr(trackTag)
	}
	p.ApplyDefaults()
	p.SetResolvedBuild(b)
	if err := p.Validate(); err != nil {
		t.Fatalf("pool: %v", err)
	}
	if err := e.store.CreateWarmPool(e.ctx, p); err != nil {
		t.Fatalf("create pool: %v", err)
	}
	e.ctl.WakePool(p.ID)
	return p
}

// waitPool waits until cond holds for the pool, failing after 30 s with
// the pool's last state.
func (e *env) waitPool(t *testing.T, id, what string, cond func(p *standby.WarmPool) bool) *standby.WarmPool {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := e.store.FindWarmPool(e.ctx, id)
		if err != nil {
			t.Fatalf("find pool: %v", err)
		}
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(p)
			t.Fatalf("timed out waiting for %s; pool: %s", what, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *env) instances(t *testing.T, poolID, state string) []*standby.Instance {
	t.Helper()
	f := standby.InstanceFilter{PoolID: poolID}
	if state != "" {
		f.States = []string{state}
	}
	got, _, err := e.store.FindInstances(e.ctx, f)
	if err != nil {
		t.Fatalf("find instances: %v", err)
	}
	return got
}

func (e *env) pid(t *testing.T, instanceID string) int {
	t.Helper()
	infos, err := e.agent.Instances(e.ctx)
	if err != nil {
		t.Fatalf("agent instances: %v", err)
	}
	for _, in := range infos {
		if in.ID == instanceID {
			return in.PID
		}
	}
	return 0
}

func (e *env) checkout(t *testing.T, poolID string) *standby.Sandbox {
	t.Helper()
	now := standby.Now()
	sb, err := e.store.Checkout(e.ctx, standby.CheckoutRequest{
		ProjectID: e.project, PoolIDs: []string{poolID}, Now: now,
		Sandbox: &standby.Sandbox{
			ID: standby.NewID(standby.PrefixSandbox), ProjectID: e.project, Template: "sleeper",
			State: standby.SandboxRunning, TimeoutMS: 3600_000, ExpiresAt: now.Add(time.Hour),
			Metadata: json.RawMessage("{}"), Labels: map[string]string{}, Annotations: map[string]string{},
			WarmPoolCheckout: standby.WarmPoolCheckout{Source: standby.SourceWarmPool, Mode: standby.ModeRequire},
		},
	})
	if err != nil {
		t.Fatalf("checkout: %v", err)
	}
	e.ctl.WakePool(poolID)
	return sb
}

func TestIntegrationFillAndReplaceKilled(t *testing.T) {
	e := newEnv(t, nil)
	b := e.build(t, "exec sleep 1000", false)
	p := e.pool(t, 3, 3, b, "")
	e.waitPool(t, p.ID, "3 ready", func(p *standby.WarmPool) bool {
		return p.Status.Ready == 3 && p.Status.Target == 3 && p.LastReconciledAt != nil
	})
	ready := e.instances(t, p.ID, standby.InstanceReady)
	for _, in := range ready {
		// Recorded with the ready event, which carries them.
		if in.Address == "" || in.Ports == nil {
			t.Fatalf("ready instance %s has no address or ports: %+v", in.ID, in)
		}
	}
	victim := ready[0]
	pid := e.pid(t, victim.ID)
	if pid <= 0 {
		t.Fatalf("agent does not know instance %s", victim.ID)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	e.waitPool(t, p.ID, "the killed instance replaced", func(p *standby.WarmPool) bool {
		if p.Status.Ready != 3 || p.Status.Failed < 1 {
			return false
		}
		in, err := e.store.FindInstance(e.ctx, victim.ID)
		return err == nil && in.State == standby.InstanceFailed
	})
	for _, in := range e.instances(t, p.ID, standby.InstanceReady) {
		if in.ID == victim.ID {
			t.Fatalf("killed instance %s still ready", in.ID)
		}
	}

	// A checked-out sandbox whose process dies fails.
	sb := e.checkout(t, p.ID)
	if err := syscall.Kill(e.pid(t, sb.InstanceID), syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	waitFor(t, "sandbox failed", 30*time.Second, func() bool {
		got, err := e.store.FindSandbox(e.ctx, sb.ID)
		return err == nil && got.State == standby.SandboxFailed && got.Error != nil && got.StoppedAt != nil
	})
	waitFor(t, "its instance row deleted", 30*time.Second, func() bool {
		_, err := e.store.FindInstance(e.ctx, sb.InstanceID)
		return standby.IsCode(err, standby.ENotFound)
	})
	e.waitPool(t, p.ID, "refilled after checkout", func(p *standby.WarmPool) bool { return p.Status.Ready == 3 })

	// Stopping a sandbox stops its process.
	sb = e.checkout(t, p.ID)
	pid = e.pid(t, sb.InstanceID)
	if _, err := e.store.UpdateSandbox(e.ctx, sb.ID, func(s *standby.Sandbox) error {
		s.State = standby.SandboxStopping
		return nil
	}); err != nil {
		t.Fatalf("update sandbox: %v", err)
	}
	e.ctl.WakeSandbox(sb.ID)
	waitFor(t, "sandbox stopped", 30*time.Second, func() bool {
		got, err := e.store.FindSandbox(e.ctx, sb.ID)
		return err == nil && got.State == standby.SandboxStopped && got.StoppedAt != nil
	})
	if e.pid(t, sb.InstanceID) != 0 || syscall.Kill(pid, 0) == nil {
		t.Fatalf("stopped sandbox's process %d still runs", pid)
	}

	// Disabling the pool stops its ready instances.
	if _, err := e.store.UpdateWarmPool(e.ctx, p.ID, func(p *standby.WarmPool) error {
		p.State = standby.PoolDisabled
		return nil
	}); err != nil {
		t.Fatalf("disable: %v", err)
	}
	e.ctl.WakePool(p.ID)
	e.waitPool(t, p.ID, "disabled pool empty", func(p *standby.WarmPool) bool {
		return p.Status.Ready == 0 && p.Status.Warming == 0 && p.Status.Draining == 0 && p.Status.Target == 0
	})
}

// manualClock is a clock that moves only when told, and counts how often
// it was read, so a test can wait for the controller to have looked many
// times.
type manualClock struct {
	mu    sync.Mutex
	now   time.Time
	reads int
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.now
}

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *manualClock) readCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// waitLooks waits until the controller read the clock n more times: it
// looked at the pool many times since.
func waitLooks(t *testing.T, c *manualClock, n int) {
	t.Helper()
	start := c.readCount()
	waitFor(t, "controller looks", 30*time.Second, func() bool { return c.readCount() >= start+n })
}

func TestIntegrationStartFailuresBackOff(t *testing.T) {
	tests := []struct {
		name      string
		portCheck bool
	}{
		// Never ready: every start is a plain failure.
		{"never ready", true},
		// A process check may pass before sh exits: readiness that dies at
		// once still counts as a failed start.
		{"ready then exits", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &manualClock{now: standby.Now()}
			e := newEnv(t, clock)
			b := e.build(t, "exit 3", tt.portCheck)
			p := e.pool(t, 3, 3, b, "")
			settled := func(p *standby.WarmPool) bool {
				return p.DegradedReason != nil && *p.DegradedReason == standby.DegradedArtifactPrewarmFailed &&
					p.Status.Failed >= 3 && p.Status.Warming == 0 && p.Status.Ready == 0 && p.Status.Draining == 0
			}
			e.waitPool(t, p.ID, "artifact_prewarm_failed", settled)
			// The clock stands still, so the backoff never ends: however
			// often the controller looks, nothing more starts.
			n := len(e.instances(t, p.ID, ""))
			waitLooks(t, clock, 50)
			got := e.waitPool(t, p.ID, "pool", func(*standby.WarmPool) bool { return true })
			if m := len(e.instances(t, p.ID, "")); m != n || !settled(got) || got.RolloutStatus.Phase != standby.RolloutStalled {
				t.Fatalf("during backoff: %d instances (had %d), status %+v, degraded %v, phase %s", m, n, got.Status, got.DegradedReason, got.RolloutStatus.Phase)
			}
			// Past the longest backoff, another round starts (and fails).
			clock.advance(time.Second)
			e.ctl.WakePool(p.ID)
			e.waitPool(t, p.ID, "another round of failures", func(p *standby.WarmPool) bool {
				return settled(p) && p.Status.Failed > n
			})
			n = len(e.instances(t, p.ID, ""))
			waitLooks(t, clock, 50)
			if m := len(e.instances(t, p.ID, "")); m != n {
				t.Fatalf("after one backoff: %d instances, then %d without the clock moving", n, m)
			}
		})
	}
}

func TestIntegrationTagMoveRollsOver(t *testing.T) {
	e := newEnv(t, nil)
	b1 := e.build(t, "exec sleep 1000", false, "stable")
	p := e.pool(t, 2, 2, b1, "stable")
	e.waitPool(t, p.ID, "2 ready", func(p *standby.WarmPool) bool { return p.Status.Ready == 2 })
	sb := e.checkout(t, p.ID)
	claimedPID := e.pid(t, sb.InstanceID)
	e.waitPool(t, p.ID, "refilled", func(p *standby.WarmPool) bool { return p.Status.Ready == 2 && p.Status.Claimed == 1 })

	b2 := e.build(t, "exec sleep 1001", false)
	if err := e.store.SetTag(e.ctx, e.project, "sleeper", "stable", b2.ID); err != nil {
		t.Fatalf("set tag: %v", err)
	}
	e.ctl.WakeAll()
	got := e.waitPool(t, p.ID, "rolled to the new build", func(p *standby.WarmPool) bool {
		if p.ResolvedTemplateBuildID == nil || *p.ResolvedTemplateBuildID != b2.ID || p.Status.Ready != 2 {
			return false
		}
		if p.RolloutStatus.Phase != standby.RolloutComplete {
			return false
		}
		for _, in := range e.instances(t, p.ID, standby.InstanceReady) {
			if in.TemplateBuildID != b2.ID {
				return false
			}
		}
		return true
	})
	if got.PreviousResolvedTemplateBuildID == nil || *got.PreviousResolvedTemplateBuildID != b1.ID {
		t.Errorf("previous_resolved_template_build_id = %v, want %s", got.PreviousResolvedTemplateBuildID, b1.ID)
	}
	if got.PreviousResolvedTemplate == nil || *got.PreviousResolvedTemplate != b1.CanonicalRef {
		t.Errorf("previous_resolved_template = %v, want %s", got.PreviousResolvedTemplate, b1.CanonicalRef)
	}
	if got.RolloutGeneration != 2 {
		t.Errorf("rollout_generation = %d, want 2", got.RolloutGeneration)
	}
	if got.RolloutStatus.TargetBuildID != b2.ID || got.RolloutStatus.CurrentCounts[b2.ID] != 2 || got.RolloutStatus.CurrentCounts[b1.ID] != 0 {
		t.Errorf("rollout_status = %+v", got.RolloutStatus)
	}
	// The claimed instance of the old build was left alone.
	in, err := e.store.FindInstance(e.ctx, sb.InstanceID)
	if err != nil || in.State != standby.InstanceClaimed || in.TemplateBuildID != b1.ID {
		t.Fatalf("claimed instance: %+v, %v", in, err)
	}
	if pid := e.pid(t, sb.InstanceID); pid != claimedPID || syscall.Kill(pid, 0) != nil {
		t.Fatalf("claimed instance's process %d is gone", claimedPID)
	}
	if s, err := e.store.FindSandbox(e.ctx, sb.ID); err != nil || s.State != standby.SandboxRunning {
		t.Fatalf("sandbox: %+v, %v", s, err)
	}
}

func TestIntegrationColdStartAndExpiry(t *testing.T) {
	e := newEnv(t, nil)
	b := e.build(t, "exec sleep 1000", false)
	now := standby.Now()
	sb := &standby.Sandbox{
		ID: standby.NewID(standby.PrefixSandbox), ProjectID: e.project, Template: "sleeper",
		Config: standby.Resources{VCPUs: 0.1, MemoryMB: 64, DiskMB: 64}, State: standby.SandboxRunning,
		CreatedAt: now, TimeoutMS: 500, ExpiresAt: now.Add(500 * time.Millisecond),
		Metadata: json.RawMessage("{}"), Labels: map[string]string{}, Annotations: map[string]string{},
		WarmPoolCheckout: standby.WarmPoolCheckout{Source: standby.SourceCold, Mode: standby.ModePrefer},
	}
	got, err := e.ctl.ColdStart(e.ctx, sb, b, map[string]string{"GREETING": "hi"})
	if err != nil {
		t.Fatalf("cold start: %v", err)
	}
	if got.InstanceID == "" || got.HostID != "host_test" || got.TemplateBuildID != b.ID {
		t.Fatalf("cold-started sandbox: %+v", got)
	}
	in, err := e.store.FindInstance(e.ctx, got.InstanceID)
	if err != nil || in.State != standby.InstanceClaimed || in.PoolID != "" {
		t.Fatalf("cold instance: %+v, %v", in, err)
	}
	waitFor(t, "sandbox expired", 30*time.Second, func() bool {
		s, err := e.store.FindSandbox(e.ctx, sb.ID)
		return err == nil && s.State == standby.SandboxExpired && s.StoppedAt != nil
	})
	waitFor(t, "expired sandbox's process stopped", 30*time.Second, func() bool {
		_, err := e.store.FindInstance(e.ctx, got.InstanceID)
		return standby.IsCode(err, standby.ENotFound) && e.pid(t, got.InstanceID) == 0
	})

	// A build that cannot start gives unavailable and leaves nothing.
	bad := e.build(t, "exit 1", true)
	sb2 := &standby.Sandbox{ID: standby.NewID(standby.PrefixSandbox), ProjectID: e.project, Template: "sleeper", State: standby.SandboxRunning,
		CreatedAt: now, TimeoutMS: 60_000, ExpiresAt: now.Add(time.Minute), Metadata: json.RawMessage("{}"),
		Labels: map[string]string{}, Annotations: map[string]string{}}
	if _, err := e.ctl.ColdStart(e.ctx, sb2, bad, nil); !standby.IsCode(err, standby.EUnavailable) {
		t.Fatalf("cold start of a failing build: %v, want unavailable", err)
	}
	left, _, err := e.store.FindInstances(e.ctx, standby.InstanceFilter{NoPool: true, States: []string{standby.InstanceWarming, standby.InstanceReady, standby.InstanceClaimed}})
	if err != nil || len(left) != 0 {
		t.Fatalf("instances left after a failed cold start: %d, %v", len(left), err)
	}
	if _, err := e.store.FindSandbox(e.ctx, sb2.ID); !standby.IsCode(err, standby.ENotFound) {
		t.Fatalf("failed cold start stored its sandbox: %v", err)
	}
}

// TestIntegrationRestartReconciles stops the controller, makes the store
// and the agent disagree in each way a crash can leave them, and checks a
// new controller sets them straight.
func TestIntegrationRestartReconciles(t *testing.T) {
	e := newEnv(t, nil)
	b := e.build(t, "exec sleep 1000", false)
	p := e.pool(t, 2, 2, b, "")
	e.waitPool(t, p.ID, "2 ready", func(p *standby.WarmPool) bool { return p.Status.Ready == 2 })
	e.stopController()

	// A draining row whose process still runs (the stop never finished).
	ready := e.instances(t, p.ID, standby.InstanceReady)
	draining := ready[0]
	drainPID := e.pid(t, draining.ID)
	if _, err := e.store.UpdateInstance(e.ctx, draining.ID, func(in *standby.Instance) error {
		in.State, in.Reason, in.EndedAt = standby.InstanceDraining, "test", standby.Ptr(standby.Now())
		return nil
	}); err != nil {
		t.Fatalf("update: %v", err)
	}
	// A ready row the agent knows nothing of.
	lost := &standby.Instance{
		ID: standby.NewID(standby.PrefixInstance), ProjectID: e.project, PoolID: p.ID, State: standby.InstanceReady,
		TemplateBuildID: b.ID, HostID: "host_test", Ports: map[string]int{}, Labels: map[string]string{},
		Annotations: map[string]string{}, CreatedAt: standby.Now(), ReadyAt: standby.Ptr(standby.Now()),
	}
	if err := e.store.CreateInstance(e.ctx, lost); err != nil {
		t.Fatalf("create instance: %v", err)
	}
	// A process the store knows nothing of.
	orphan := standby.NewID(standby.PrefixInstance)
	if _, err := e.agent.StartInstance(e.ctx, standby.InstanceSpec{ID: orphan, ProjectID: e.project, Build: b, Resources: b.Resources}); err != nil {
		t.Fatalf("start orphan: %v", err)
	}
	orphanPID := e.pid(t, orphan)

	e.startController(t)
	waitFor(t, "lost row failed", 30*time.Second, func() bool {
		in, err := e.store.FindInstance(e.ctx, lost.ID)
		return err == nil && in.State == standby.InstanceFailed && in.Reason == reasonLost
	})
	waitFor(t, "draining row finished", 30*time.Second, func() bool {
		_, err := e.store.FindInstance(e.ctx, draining.ID)
		return standby.IsCode(err, standby.ENotFound) && e.pid(t, draining.ID) == 0
	})
	waitFor(t, "orphan stopped", 30*time.Second, func() bool { return e.pid(t, orphan) == 0 })
	for _, pid := range []int{drainPID, orphanPID} {
		if syscall.Kill(pid, 0) == nil {
			t.Fatalf("process %d still alive", pid)
		}
	}
	e.waitPool(t, p.ID, "refilled to 2 ready", func(p *standby.WarmPool) bool {
		return p.Status.Ready == 2 && p.Status.Draining == 0 && p.Status.Failed >= 1
	})
	h, err := e.store.FindHost(e.ctx, "host_test")
	if err != nil || h.LastHeartbeatAt.IsZero() {
		t.Fatalf("host record: %+v, %v", h, err)
	}
}

// A pool deleted while its instances start leaves nothing running: a
// stop that finds an instance still starting waits for it, and one that
// starts after its row went is stopped when it gets ready.
func TestIntegrationDeleteWhileStarting(t *testing.T) {
	e := newEnv(t, nil)
	b := e.build(t, "exec sleep 1000", false)
	for round := range 5 {
		p := e.pool(t, 8, 8, b, "")
		// Deleted at once: some starts are queued, some in flight,
		// some done.
		time.Sleep(time.Duration(round) * 5 * time.Millisecond)
		if _, err := e.store.UpdateWarmPool(e.ctx, p.ID, func(p *standby.WarmPool) error {
			now := standby.Now()
			p.State, p.DeletedAt = standby.PoolDeleted, &now
			return nil
		}); err != nil {
			t.Fatalf("delete pool: %v", err)
		}
		e.ctl.WakePool(p.ID)
		waitFor(t, "nothing of the deleted pool left", 30*time.Second, func() bool {
			infos, err := e.agent.Instances(e.ctx)
			return err == nil && len(infos) == 0 && len(e.instances(t, p.ID, "")) == 0
		})
	}
}

// countingAgent records how many StartInstance calls run at once.
type countingAgent struct {
	standby.Agent
	cur, peak atomic.Int32
}

func (c *countingAgent) StartInstance(ctx context.Context, spec standby.InstanceSpec) (standby.InstanceInfo, error) {
	n := c.cur.Add(1)
	defer c.cur.Add(-1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	time.Sleep(20 * time.Millisecond) // long enough for starts to overlap
	return c.Agent.StartInstance(ctx, spec)
}

// While checkouts stream in, a refill starts one instance at a time; once
// they stop, starts run in parallel again.
func TestIntegrationRefillYieldsToCheckouts(t *testing.T) {
	e := newEnv(t, nil)
	e.stopController()
	ca := &countingAgent{Agent: e.agent}
	e.ctlAgent = ca
	e.startController(t)
	b := e.build(t, "exec sleep 1000", false)

	e.ctl.PoolCheckedOut("twp_elsewhere")
	streaming := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-streaming:
				return
			case <-time.After(5 * time.Millisecond):
				e.ctl.PoolCheckedOut("twp_elsewhere")
			}
		}
	})
	p := e.pool(t, 6, 6, b, "")
	e.waitPool(t, p.ID, "6 ready during the stream", func(p *standby.WarmPool) bool { return p.Status.Ready == 6 })
	close(streaming)
	wg.Wait()
	if got := ca.peak.Load(); got != 1 {
		t.Fatalf("%d starts ran at once while checkouts streamed in, want 1", got)
	}

	time.Sleep(2 * checkoutStream)
	ca.peak.Store(0)
	q := e.pool(t, 6, 6, b, "")
	e.waitPool(t, q.ID, "6 more ready", func(p *standby.WarmPool) bool { return p.Status.Ready == 6 })
	if got := ca.peak.Load(); got < 2 {
		t.Fatalf("%d start at a time after the stream, want them in parallel", got)
	}
}

// eventsAgent is an agent whose events the test sends.
type eventsAgent struct {
	standby.Agent
	events chan standby.InstanceEvent
}

func (a *eventsAgent) Events() <-chan standby.InstanceEvent { return a.events }

// concurrentStore lets up to want UpdateInstance calls through only once
// that many are in flight together (or after a long wait), and records
// the most that ever were.
type concurrentStore struct {
	standby.Store
	want      int32
	cur, peak atomic.Int32
	all       chan struct{} // closed once want are in flight
	once      sync.Once
}

func (s *concurrentStore) UpdateInstance(ctx context.Context, id string, fn func(*standby.Instance) error) (*standby.Instance, error) {
	n := s.cur.Add(1)
	defer s.cur.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	if n >= s.want {
		s.once.Do(func() { close(s.all) })
	}
	select {
	case <-s.all:
	case <-time.After(5 * time.Second):
	}
	return s.Store.UpdateInstance(ctx, id, fn)
}

// A burst of ready events is recorded concurrently, so the writes share
// the store's commits; one instance's events keep their order.
func TestReadyEventsRecordedTogether(t *testing.T) {
	e := newEnv(t, nil)
	e.stopController() // it would find these rows on no agent and fail them
	cs := &concurrentStore{Store: e.store, want: 4, all: make(chan struct{})}
	ctl, err := New(Config{Store: cs, Agents: []standby.Agent{e.agent}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	b := e.build(t, "exec sleep 1000", false)
	now := standby.Now()
	var ids []string
	for range 8 {
		in := &standby.Instance{ID: standby.NewID(standby.PrefixInstance), ProjectID: e.project, State: standby.InstanceWarming,
			TemplateBuildID: b.ID, HostID: "host_test", CreatedAt: now}
		if err := e.store.CreateInstance(e.ctx, in); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	ag := &eventsAgent{events: make(chan standby.InstanceEvent, 16)}
	for _, id := range ids {
		ag.events <- standby.InstanceEvent{InstanceID: id, HostID: "host_test", Type: standby.EventReady, At: now}
	}
	// The last one also fails after its ready: it must end failed.
	ag.events <- standby.InstanceEvent{InstanceID: ids[7], HostID: "host_test", Type: standby.EventFailed, Reason: "exited", At: now}
	close(ag.events)
	ctl.readEvents(e.ctx, ag)

	if got := cs.peak.Load(); got < cs.want {
		t.Fatalf("at most %d ready events were recorded at once, want %d", got, cs.want)
	}
	for i, id := range ids {
		in, err := e.store.FindInstance(e.ctx, id)
		want := standby.InstanceReady
		if i == 7 {
			want = standby.InstanceFailed
		}
		if err != nil || in.State != want {
			t.Fatalf("instance %d: %v, %v; want %s", i, in, err, want)
		}
	}
}
