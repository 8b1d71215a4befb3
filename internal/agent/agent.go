// Package agent runs instances on the local machine: it starts each
// instance's start_cmd as its own process group in its own working root,
// assigns ports, runs readiness and liveness checks, captures output to files,
// stops whole process groups, and re-adopts instances that outlived an agent
// restart. It implements standby.Agent.
package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/standbyhq/standby"
)

// Config configures a Local agent.
type Config struct {
	// DataDir holds the agent's state: instances' logs and kept artefacts
	// under <DataDir>/instances/, their roots, state and sockets under
	// <DataDir>/run/. Required.
	DataDir string
	// HostID identifies this host in the control plane. Required: it must
	// stay the same across restarts, so the caller persists it.
	HostID string
	// Name is the host's display name (default: os.Hostname()).
	Name string
	// HostPoolID and CellID place the host for scheduling.
	HostPoolID string
	CellID     string
	// Address is where instances are reached; ports are allocated on it
	// (default "127.0.0.1").
	Address string
	// SelfExe is the standby binary that argv[0] "standby" maps to
	// (default: os.Executable()).
	SelfExe string
	// StopGrace is the time between SIGTERM and SIGKILL (default 5s).
	StopGrace time.Duration
	// MaxInstances caps the instances the agent runs at once (default 1000).
	MaxInstances int
	// Clock stamps events (default standby.SystemClock).
	Clock standby.Clock
	// Logger receives lifecycle logs (default: discarded).
	Logger *slog.Logger
	// Isolation is IsolationAuto (default: namespaces and cgroups when
	// running as root on Linux with cgroups mounted, else none),
	// IsolationOn (New fails without them) or IsolationNone.
	Isolation string
	// UIDBase is the first uid isolated instances run as; each running
	// instance has its own uid from UIDBase up (default 100000).
	UIDBase int
	// PidsLimit caps the tasks of an isolated instance (default 256).
	PidsLimit int
	// ArtefactRetention is how long an ended instance's artefacts and
	// logs are kept (default 24h).
	ArtefactRetention time.Duration
}

// eventBuffer is how many events may wait for the control plane before
// senders block (they never block past shutdown or a stop).
const eventBuffer = 4096

// Local is the agent of the machine it runs on. It implements
// standby.Agent. Instances are processes that outlive the agent: stopping
// the agent leaves them running, and the next agent on the same DataDir
// re-adopts them.
type Local struct {
	cfg       Config
	clock     standby.Clock
	log       *slog.Logger
	instDir   string
	runDir    string // state files and exec sockets: a tmpfs when isolated
	capacity  standby.Resources
	createdAt time.Time
	events    chan standby.InstanceEvent
	http      *http.Client
	// isolation is the Host.Isolation value in force; cgKind and cgScope
	// say where isolated instances' cgroups are.
	isolation string
	// spawner starts inits (isolated); nil without isolation.
	spawner *spawner
	cgKind  string
	cgScope string

	// base is cancelled when Run returns; every goroutine of the agent
	// watches it and is counted in wg.
	base       context.Context
	cancelBase context.CancelFunc
	wg         sync.WaitGroup

	mu       sync.Mutex
	running  map[string]*instance
	pending  map[string]chan struct{} // ids being started; closed when the start is over
	ports    map[int]bool             // ports given to running or starting instances
	closed   bool                     // Run has returned: no new work
	runStart bool                     // Run has been called
	lost     []string                 // instances found dead by New, reported by Run
	uids     map[int]string           // uids of isolated instances, to their ids

	stock *logStock // log files made ahead of starts
}

var _ standby.Agent = (*Local)(nil)

// New checks cfg, fills its defaults and re-adopts the instances a previous
// agent on the same DataDir left running: Instances lists them at once and
// their checks resume. Call Run, which reports the ones that died meanwhile.
func New(cfg Config) (*Local, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("agent: DataDir is required")
	}
	if cfg.HostID == "" {
		return nil, errors.New("agent: HostID is required")
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	if cfg.SelfExe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("agent: find own executable: %w", err)
		}
		cfg.SelfExe = exe
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.MaxInstances <= 0 {
		cfg.MaxInstances = 1000
	}
	if cfg.Clock == nil {
		cfg.Clock = standby.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.UIDBase <= 0 {
		cfg.UIDBase = 100000
	}
	if cfg.PidsLimit <= 0 {
		cfg.PidsLimit = 256
	}
	if cfg.ArtefactRetention <= 0 {
		cfg.ArtefactRetention = 24 * time.Hour
	}
	isolation, cgKind, err := resolveIsolation(cfg.Isolation)
	if err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	cfg.DataDir = dataDir
	instDir := filepath.Join(dataDir, "instances")
	if err := os.MkdirAll(instDir, 0o755); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	runDir := filepath.Join(dataDir, "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if isolation != standby.IsolationNone {
		if err := mountRunDir(runDir); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	var sp *spawner
	if isolation != standby.IsolationNone {
		var err error
		if sp, err = startSpawner(filepath.Join(runDir, rootfsDir), cfg.SelfExe); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	base, cancel := context.WithCancel(context.Background())
	a := &Local{
		cfg:       cfg,
		clock:     cfg.Clock,
		log:       cfg.Logger,
		instDir:   instDir,
		runDir:    runDir,
		capacity:  hostCapacity(dataDir),
		createdAt: cfg.Clock.Now(),
		events:    make(chan standby.InstanceEvent, eventBuffer),
		http: &http.Client{
			// Probes open a fresh connection each time: an idle
			// keep-alive connection would outlive a dead instance.
			Transport: &http.Transport{DisableKeepAlives: true},
			// A redirect is not a healthy answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		base:       base,
		cancelBase: cancel,
		running:    map[string]*instance{},
		pending:    map[string]chan struct{}{},
		ports:      map[int]bool{},
		uids:       map[int]string{},
		isolation:  isolation,
		cgKind:     cgKind,
		cgScope:    cgroupScope(dataDir),
		stock:      newLogStock(instDir),
		spawner:    sp,
	}
	a.lost = a.adoptAll()
	a.sweepOrphans()
	return a, nil
}

// Run reports the instances a previous agent left that died meanwhile as
// failed ("lost while agent was down"), then serves until ctx ends. It
// leaves every instance running, waits for the agent's goroutines and
// closes the Events channel.
func (a *Local) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.runStart {
		a.mu.Unlock()
		return errors.New("agent: Run called twice")
	}
	a.runStart = true
	a.mu.Unlock()

	for _, id := range a.lost {
		a.emit(id, standby.EventFailed, reasonLost, ctx.Done())
	}
	a.lost = nil
	a.log.Info("agent running", "host", a.cfg.HostID, "instances", a.count(), "isolation", a.isolation)
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		a.sweep(a.base)
	}()
	go func() {
		defer a.wg.Done()
		a.stockUp(a.base)
	}()
	<-ctx.Done()

	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	a.cancelBase()
	a.wg.Wait()
	// The instances run on, holding their roots in their namespaces; the
	// next agent reaches them again through their inits (adopt).
	// (Not under a.mu: a teardown takes rootMu, then a.mu.)
	a.mu.Lock()
	running := slices.Collect(maps.Values(a.running))
	a.mu.Unlock()
	for _, inst := range running {
		inst.rootMu.Lock()
		if inst.rootFD >= 0 {
			syscall.Close(inst.rootFD)
			inst.rootFD = -1
		}
		inst.rootMu.Unlock()
	}
	if a.spawner != nil {
		a.spawner.close()
	}
	a.removeScope()
	a.unmountRunDir()
	a.http.CloseIdleConnections()
	close(a.events)
	a.log.Info("agent stopped; instances keep running", "host", a.cfg.HostID)
	return nil
}

// Events delivers ready and failed events. It is closed when Run returns.
func (a *Local) Events() <-chan standby.InstanceEvent { return a.events }

// emit sends an event unless the agent is shutting down or done is closed
// (the instance was stopped on request), so a full buffer never wedges a
// stop or the shutdown.
func (a *Local) emit(id, typ, reason string, done <-chan struct{}) {
	a.send(a.event(id, typ, reason), done)
}

// event is an event of this host about instance id, as of now.
func (a *Local) event(id, typ, reason string) standby.InstanceEvent {
	return standby.InstanceEvent{InstanceID: id, HostID: a.cfg.HostID, Type: typ, Reason: reason, At: a.clock.Now()}
}

func (a *Local) send(ev standby.InstanceEvent, done <-chan struct{}) {
	id, typ := ev.InstanceID, ev.Type
	select {
	case a.events <- ev:
	case <-a.base.Done():
		a.log.Warn("event dropped at shutdown", "instance", id, "type", typ)
	case <-done:
	}
}

// Host describes this machine.
func (a *Local) Host() standby.Host {
	return standby.Host{
		ID:              a.cfg.HostID,
		Name:            a.cfg.Name,
		State:           standby.HostUp,
		HostPoolID:      a.cfg.HostPoolID,
		CellID:          a.cfg.CellID,
		Address:         a.cfg.Address,
		Isolation:       a.isolation,
		Capacity:        a.capacity,
		MaxInstances:    a.cfg.MaxInstances,
		LastHeartbeatAt: a.clock.Now(),
		CreatedAt:       a.createdAt,
	}
}

// Instances lists the running instances (started or re-adopted), by id.
func (a *Local) Instances(ctx context.Context) ([]standby.InstanceInfo, error) {
	a.mu.Lock()
	out := make([]standby.InstanceInfo, 0, len(a.running))
	for _, inst := range a.running {
		out = append(out, inst.infoLocked())
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// stockUp fills the log stock whenever no start is in progress, until ctx
// ends.
func (a *Local) stockUp(ctx context.Context) {
	t := time.NewTicker(stockPoll)
	defer t.Stop()
	busy := func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.pending) > 0 || ctx.Err() != nil
	}
	for {
		a.stock.fill(busy)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unpendLocked ends the start in progress of id: a stop waiting for it
// goes on.
func (a *Local) unpendLocked(id string) {
	if ch := a.pending[id]; ch != nil {
		close(ch)
		delete(a.pending, id)
	}
}

func (a *Local) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.running)
}

// launch puts inst in the running set and starts its waiter and monitor,
// in one step under mu, so that an instance which dies at once is never
// taken out of the set before it was put in. false: the agent has shut
// down and started nothing.
func (a *Local) launch(inst *instance, waiter func()) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.unpendLocked(inst.id)
	if a.closed {
		return false
	}
	a.running[inst.id] = inst
	for _, p := range inst.ports {
		a.ports[p] = true
	}
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		waiter()
	}()
	go func() {
		defer a.wg.Done()
		a.monitor(inst)
	}()
	return true
}

// hostCapacity reads the machine's CPUs, memory and the data dir's disk.
func hostCapacity(dataDir string) standby.Resources {
	r := standby.Resources{VCPUs: float64(runtime.NumCPU())}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "MemTotal:" {
				if kb, err := strconv.Atoi(fields[1]); err == nil {
					r.MemoryMB = kb / 1024
				}
				break
			}
		}
		f.Close()
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dataDir, &st); err == nil {
		r.DiskMB = int(st.Blocks * uint64(st.Bsize) / (1 << 20))
	}
	return r
}
