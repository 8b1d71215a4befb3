package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/client"
	"github.com/standbyhq/standby/internal/agent"
	"github.com/standbyhq/standby/internal/controller"
)

// benchConfig is what `standby bench` is run with.
type benchConfig struct {
	JSON        bool
	Duration    time.Duration // length of each noop phase
	Concurrency int           // workers of the c32 phases
	WarmupN     int           // size of the warmup pool
	Checkouts   int           // checkouts of the concurrent phase (0: sized from Duration)
	ColdN       int           // sequential cold starts (and warm checkouts) compared
	CPUProfile  string        // CPU profile of the concurrent checkout phase
	MemProfile  string        // heap profile with the checkout pool full
	Isolation   string        // serveConfig.Isolation of the server
	// CompareNormal runs the noop and checkout phases again on a second
	// server whose store answers at commit (synchronous=NORMAL).
	CompareNormal bool
	// sync is the store's synchronous setting of this run.
	sync string
	// checkoutOnly stops after the noop and checkout phases.
	checkoutOnly bool
}

// benchResult is what `standby bench --json` prints.
type benchResult struct {
	Noop     latencyFigures  `json:"noop"`
	Checkout checkoutFigures `json:"checkout"`
	// CheckoutNormal is checkout on a synchronous=NORMAL store (with the
	// noop floor of that run), with --compare-normal.
	CheckoutNormal *normalFigures  `json:"checkout_normal,omitempty"`
	Warmup         warmupFigures   `json:"warmup"`
	ColdVsWarm     coldWarmFigures `json:"cold_vs_warm"`
	Memory         memoryFigures   `json:"memory"`
	Machine        machineFigures  `json:"machine"`
}

// latencyFigures are one request kind measured sequentially (c1) and with
// --concurrency workers (c32).
type latencyFigures struct {
	C1P50US  float64 `json:"c1_p50_us"`
	C1P99US  float64 `json:"c1_p99_us"`
	C32P50US float64 `json:"c32_p50_us"`
	C32P99US float64 `json:"c32_p99_us"`
	C32RPS   float64 `json:"c32_rps"`
}

type checkoutFigures struct {
	latencyFigures
	RatioC1P50  float64 `json:"ratio_c1_p50"`
	RatioC32RPS float64 `json:"ratio_c32_rps"`
	Hits        int     `json:"hits"`
	Misses      int     `json:"misses"`
	// Duplicates counts instances handed out more than once (must be 0).
	Duplicates int `json:"duplicates"`
}

// normalFigures are the checkout phases of a second run on a store that
// answers at commit without syncing, next to that run's floor.
type normalFigures struct {
	Noop latencyFigures `json:"noop"`
	checkoutFigures
	Durability string `json:"durability"`
}

// warmupFigures are medians over rounds that each time a warmup and then
// the spawn limit, so the two are measured under the same conditions; a
// round lasts well under a second, so one round alone is noisy.
type warmupFigures struct {
	N              int     `json:"n"`
	Rounds         int     `json:"rounds"`
	Seconds        float64 `json:"seconds"`
	PerS           float64 `json:"per_s"`
	SpawnLimitPerS float64 `json:"spawn_limit_per_s"`
	// Ratio is the median of the rounds' per_s / spawn_limit_per_s.
	Ratio float64 `json:"ratio"`
}

// warmupRounds is how many warmups and spawn limits bench times.
const warmupRounds = 5

type coldWarmFigures struct {
	ColdP50US float64 `json:"cold_p50_us"`
	WarmP50US float64 `json:"warm_p50_us"`
	Ratio     float64 `json:"ratio"`
}

type memoryFigures struct {
	BytesPerReadyInstance float64 `json:"bytes_per_ready_instance"`
}

type machineFigures struct {
	Cores      int    `json:"cores"`
	GoVersion  string `json:"go_version"`
	Store      string `json:"store"`
	Durability string `json:"durability"`
	Isolation  string `json:"isolation"`
	// FsyncUS is the median of one 4 KiB write plus fdatasync in the data
	// dir: the floor of any durable acknowledgement on this disk.
	FsyncUS float64 `json:"fsync_us"`
	// Limits says what capped the sizes of the run (agent, pids, files).
	Limits string `json:"limits"`
}

// benchTemplate is the cheap real process of the checkout pool.
const benchTemplate = "bench-sleep"

func newBenchCommand(stdout, stderr io.Writer) *cobra.Command {
	var cfg benchConfig
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure checkout, warmup and memory on a throwaway local server",
		Long: `bench starts a throwaway server in this process (temp data dir, the real
SQLite store with synchronous=FULL, a local agent), measures an authenticated
no-op request next to warm checkouts, pool warmup next to starting the same
processes directly, cold against warm starts and heap per ready instance,
then stops everything it started and removes the data dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Concurrency < 1 || cfg.WarmupN < 1 || cfg.ColdN < 1 || cfg.Duration <= 0 || cfg.Checkouts < 0 {
				return errors.New("bench: --concurrency, --warmup-n, --cold-n and --duration must be positive, --checkouts >= 0")
			}
			res, err := runBench(cmd.Context(), cfg, stderr)
			if err != nil {
				return err
			}
			if cfg.JSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			return printBenchTable(stdout, res)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&cfg.JSON, "json", false, "print one JSON object instead of a table")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each no-op phase (c1 and c32)")
	f.IntVar(&cfg.Concurrency, "concurrency", 32, "workers of the concurrent (c32) phases")
	f.IntVar(&cfg.WarmupN, "warmup-n", 100, "instances of the warmup pool")
	f.IntVar(&cfg.Checkouts, "checkouts", 0, "checkouts of the concurrent phase (default: 500 per second of --duration, at most 20000); the sequential phase does a tenth, at most 2000")
	f.IntVar(&cfg.ColdN, "cold-n", 20, "sequential cold starts compared with as many warm checkouts")
	f.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write a CPU profile of the concurrent checkout phase to this file (file.2, file.3, … for its later batches)")
	f.StringVar(&cfg.MemProfile, "memprofile", "", "write a heap profile of this process (server and bench) with the checkout pool full")
	f.StringVar(&cfg.Isolation, "isolation", envOr("STANDBY_ISOLATION", "auto"), "instance isolation of the server: auto, on or none (as serve --isolation; env STANDBY_ISOLATION)")
	f.BoolVar(&cfg.CompareNormal, "compare-normal", false, "run the noop and checkout phases again against a synchronous=NORMAL store and print them as checkout_normal")
	return cmd
}

// bench is one run: the server, its clients and what was measured so far.
type bench struct {
	cfg     benchConfig
	log     io.Writer
	dataDir string
	base    string // http://addr
	key     string
	api     *client.Client // setup and polling, its own connection
	load    *http.Client   // the measured requests
	res     benchResult

	maxInstances int
}

func runBench(ctx context.Context, cfg benchConfig, stderr io.Writer) (*benchResult, error) {
	cfg.sync = "FULL"
	res, err := runBenchServer(ctx, cfg, stderr)
	if err != nil || !cfg.CompareNormal {
		return res, err
	}
	ncfg := cfg
	ncfg.sync, ncfg.checkoutOnly, ncfg.CPUProfile, ncfg.MemProfile = "NORMAL", true, "", ""
	fmt.Fprintln(stderr, "bench: again with synchronous=NORMAL")
	nres, err := runBenchServer(ctx, ncfg, stderr)
	if err != nil {
		return nil, err
	}
	res.CheckoutNormal = &normalFigures{Noop: nres.Noop, checkoutFigures: nres.Checkout, Durability: nres.Machine.Durability}
	return res, nil
}

// runBenchServer is one run on one throwaway server.
func runBenchServer(ctx context.Context, cfg benchConfig, stderr io.Writer) (_ *benchResult, err error) {
	dataDir, err := os.MkdirTemp("", "standby-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, log: stderr, dataDir: dataDir, key: standby.NewKeySecret()}

	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() {
		served <- serve(srvCtx, serveConfig{
			Listen:     "127.0.0.1:0",
			DataDir:    dataDir,
			Sync:       cfg.sync,
			Isolation:  cfg.Isolation,
			LocalAgent: true,
			AdminKey:   b.key,
			LogLevel:   "warn",
			Ready:      func(addr string) { ready <- addr },
		}, stderr)
	}()
	defer func() {
		b.cleanup(served, stopServer)
		os.RemoveAll(dataDir)
	}()
	select {
	case addr := <-ready:
		b.base = "http://" + addr
	case err := <-served:
		served <- err // for cleanup
		return nil, fmt.Errorf("bench server: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	b.api = client.New(b.base, b.key, client.WithHTTPClient(&http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true},
		Timeout:   time.Minute,
	}))
	b.load = &http.Client{Transport: &http.Transport{
		MaxIdleConns:        cfg.Concurrency + 8,
		MaxIdleConnsPerHost: cfg.Concurrency + 8,
		DisableCompression:  true,
		// Connections must survive the refills between checkout batches.
		IdleConnTimeout: 0,
	}}

	if err := b.machine(ctx); err != nil {
		return nil, err
	}
	if err := b.noopAndCheckout(ctx); err != nil {
		return nil, err
	}
	if cfg.checkoutOnly {
		return &b.res, nil
	}
	if err := b.warmups(ctx); err != nil {
		return nil, err
	}
	if err := b.coldVsWarm(ctx); err != nil {
		return nil, err
	}
	return &b.res, nil
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// machine fills the machine section and finds how many instances the
// local agent may run at once.
func (b *bench) machine(ctx context.Context) error {
	// The agent's host is registered shortly after the server listens.
	var hosts []standby.Host
	for deadline := time.Now().Add(30 * time.Second); len(hosts) == 0; {
		var err error
		if hosts, err = b.api.AllHosts(ctx, client.ListOptions{}); err != nil {
			return fmt.Errorf("bench: list hosts: %w", err)
		}
		if time.Now().After(deadline) {
			return errors.New("bench: the local agent's host did not register within 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(hosts) != 1 {
		return fmt.Errorf("bench: want the local agent's host alone, found %d hosts", len(hosts))
	}
	b.maxInstances = hosts[0].MaxInstances
	if b.maxInstances <= 0 {
		b.maxInstances = standby.MaxPoolSize
	}
	m := &b.res.Machine
	m.Cores = runtime.NumCPU()
	m.GoVersion = runtime.Version()
	m.Store = "sqlite"
	if b.cfg.sync == "NORMAL" {
		m.Durability = "sqlite WAL synchronous=NORMAL: answered at commit, no fsync (survives a process crash, not power loss)"
	} else {
		m.Durability = "sqlite WAL synchronous=FULL: answered after fdatasync of the WAL, pipelined with the next commits (survives power loss)"
	}
	fs, err := fsyncLatency(b.dataDir, 200)
	if err != nil {
		return err
	}
	m.FsyncUS = micros(fs)
	m.Isolation = hosts[0].Isolation
	return nil
}

// sizes returns the checkouts of the sequential and concurrent phases and
// the pool size that serves them (in batches when the host cannot hold
// them all at once), and records what capped them.
func (b *bench) sizes() (n1, n32, fill int) {
	n32 = b.cfg.Checkouts
	if n32 == 0 {
		n32 = min(20000, int(500*b.cfg.Duration.Seconds()))
	}
	n32 = max(n32, b.cfg.Concurrency)
	n1 = max(1, min(2000, n32/10))
	// A few slots stay free so the pool never waits on a straggler.
	room := b.maxInstances - 10
	pids := readProcInt("/proc/sys/kernel/pid_max")
	threads := readProcInt("/proc/sys/kernel/threads-max")
	nproc := processLimit("Max processes")
	nofile := processLimit("Max open files")
	// Each ready instance holds a process, and a pidfd in the agent.
	for _, lim := range []int{pids, threads, nproc, nofile} {
		if lim > 0 {
			room = min(room, lim/2)
		}
	}
	fill = min(room, standby.MaxPoolSize, max(n1, n32))
	capped := "none"
	if fill < max(n1, n32) {
		capped = fmt.Sprintf("a pool holds at most %d ready instances here, so checkouts run in batches of %d with a refill between (not timed)", fill, fill)
	}
	b.res.Machine.Limits = fmt.Sprintf("agent max_instances=%d, pid_max=%d, threads-max=%d, ulimit -u=%s, ulimit -n=%s; cap: %s",
		b.maxInstances, pids, threads, limitString(nproc), limitString(nofile), capped)
	return n1, n32, fill
}

func readProcInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// processLimit reads a soft limit of this process from /proc/self/limits
// (-1: unlimited, 0: unknown).
func processLimit(name string) int {
	f, err := os.Open("/proc/self/limits")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		fields := strings.Fields(strings.TrimPrefix(line, name))
		if len(fields) == 0 {
			return 0
		}
		if fields[0] == "unlimited" {
			return -1
		}
		n, _ := strconv.Atoi(fields[0])
		return n
	}
	return 0
}

func limitString(n int) string {
	if n < 0 {
		return "unlimited"
	}
	return strconv.Itoa(n)
}

// noopAndCheckout measures the floor and the checkout side by side, and
// the heap per ready instance on the first fill of the checkout pool.
func (b *bench) noopAndCheckout(ctx context.Context) error {
	if _, err := b.api.CreateTemplate(ctx, client.CreateTemplateRequest{Name: benchTemplate, Description: "standby bench: a cheap real process"}); err != nil {
		return fmt.Errorf("bench: create template: %w", err)
	}
	if _, err := b.api.CreateBuild(ctx, benchTemplate, client.BuildRequest{
		StartCmd:             []string{"sleep", "infinity"},
		ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckProcess},
	}); err != nil {
		return fmt.Errorf("bench: create build: %w", err)
	}
	n1, n32, fill := b.sizes()

	// The heap window: the setup connection is open and nothing else of
	// bench's stays alive across it, so the difference is the server's.
	before := heapAlloc()
	pool, err := b.api.CreateWarmPool(ctx, client.CreateWarmPoolRequest{
		Name: "bench-checkout", TemplateRef: benchTemplate,
		MinReady: &fill, MaxReady: &fill, CheckoutPolicy: standby.ModeRequire,
	})
	if err != nil {
		return fmt.Errorf("bench: create checkout pool: %w", err)
	}
	if err := b.waitReady(ctx, pool.ID, fill, 10*time.Minute); err != nil {
		return err
	}
	// What a ready instance keeps is the floor: a pool look in flight
	// holds every decoded row of the pool for a moment, so the least of a
	// few samples is taken.
	after := heapAlloc()
	for range 4 {
		time.Sleep(50 * time.Millisecond)
		after = min(after, heapAlloc())
	}
	b.res.Memory.BytesPerReadyInstance = round(float64(int64(after)-int64(before))/float64(fill), 1)
	if b.cfg.MemProfile != "" {
		if err := writeHeapProfile(b.cfg.MemProfile); err != nil {
			return err
		}
	}

	// Connections are opened before anything is timed.
	whoami := func() (*http.Request, error) { return b.request(ctx, "GET", "/v1/whoami", nil) }
	if _, err := b.run(ctx, whoami, b.cfg.Concurrency, 20*b.cfg.Concurrency, 0, nil); err != nil {
		return err
	}
	co := &b.res.Checkout
	seen := map[string]int{}
	body := []byte(`{"warm_pool":{"id":"` + pool.ID + `","mode":"require","wait_ms":0}}`)
	checkout := func() (*http.Request, error) { return b.request(ctx, "POST", "/v1/sandboxes", body) }

	b.progress("noop c1 for %s", b.cfg.Duration)
	noop1, err := b.run(ctx, whoami, 1, 0, b.cfg.Duration, nil)
	if err != nil {
		return err
	}
	b.progress("checkout c1: %d", n1)
	co1, err := b.checkouts(ctx, pool.ID, fill, checkout, 1, n1, seen, "")
	if err != nil {
		return err
	}
	// The refill behind the sequential checkouts must not run during the
	// floor's measurement.
	if err := b.waitReady(ctx, pool.ID, fill, 10*time.Minute); err != nil {
		return err
	}
	b.progress("noop c%d for %s", b.cfg.Concurrency, b.cfg.Duration)
	noop32, err := b.run(ctx, whoami, b.cfg.Concurrency, 0, b.cfg.Duration, nil)
	if err != nil {
		return err
	}
	b.progress("checkout c%d: %d", b.cfg.Concurrency, n32)
	co32, err := b.checkouts(ctx, pool.ID, fill, checkout, b.cfg.Concurrency, n32, seen, b.cfg.CPUProfile)
	if err != nil {
		return err
	}

	b.res.Noop = figures(noop1, noop32)
	co.latencyFigures = figures(co1, co32)
	co.Hits, co.Misses = co1.hits+co32.hits, co1.misses+co32.misses
	for _, n := range seen {
		if n > 1 {
			co.Duplicates += n - 1
		}
	}
	co.RatioC1P50 = round(co.C1P50US/b.res.Noop.C1P50US, 3)
	co.RatioC32RPS = round(co.C32RPS/b.res.Noop.C32RPS, 3)

	if err := b.api.DeleteWarmPool(ctx, pool.ID, true); err != nil {
		return fmt.Errorf("bench: delete checkout pool: %w", err)
	}
	return b.waitNoInstances(ctx, 2*time.Minute)
}

// checkouts runs n checkouts with conc workers in batches the pool can
// serve: each batch starts with the pool full, and its sandboxes are
// stopped before the pool refills for the next. Only the batches are
// timed.
func (b *bench) checkouts(ctx context.Context, poolID string, fill int, mk func() (*http.Request, error), conc, n int, seen map[string]int, profile string) (*phase, error) {
	total := &phase{}
	for batch := 1; n > 0; batch++ {
		size := min(n, fill)
		n -= size
		if err := b.waitReady(ctx, poolID, fill, 10*time.Minute); err != nil {
			return nil, err
		}
		stopProfile, err := startProfile(profile, batch)
		if err != nil {
			return nil, err
		}
		var ids []string
		var mu sync.Mutex
		p, err := b.run(ctx, mk, conc, size, 0, func(body []byte) {
			sb, inst := jsonString(body, `{"id":"`), jsonString(body, `"instance_id":"`)
			mu.Lock()
			ids = append(ids, sb)
			seen[inst]++
			mu.Unlock()
		})
		if err := stopProfile(); err != nil {
			return nil, err
		}
		if err != nil {
			return nil, err
		}
		total.add(p)
		if err := b.stopSandboxes(ctx, ids); err != nil {
			return nil, err
		}
	}
	return total, nil
}

// startProfile starts the CPU profile of one checkout batch: file for the
// first, file.2, file.3, … for later ones (`go tool pprof -top file*`
// merges them), so refills between batches stay out of it.
func startProfile(file string, batch int) (func() error, error) {
	if file == "" {
		return func() error { return nil }, nil
	}
	if batch > 1 {
		file = fmt.Sprintf("%s.%d", file, batch)
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("bench: cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// jsonString returns the string value that follows key in a compact JSON
// body ("" when absent). The checkout loop uses it instead of decoding the
// whole sandbox so that bench spends little of the CPU it shares with the
// server.
func jsonString(body []byte, key string) string {
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// warmups times warmupRounds warmups, each followed by the spawn limit.
func (b *bench) warmups(ctx context.Context) error {
	n := b.cfg.WarmupN
	if n+b.cfg.ColdN > b.maxInstances-10 {
		return fmt.Errorf("bench: --warmup-n %d and --cold-n %d need more instances than the host runs (%d)", n, b.cfg.ColdN, b.maxInstances)
	}
	var secs, perS, limits, ratios []float64
	for round := 1; round <= warmupRounds; round++ {
		b.progress("warmup %d/%d: a pool of %d echo instances", round, warmupRounds, n)
		pool, d, err := b.warmPool(ctx, "bench-warmup", n)
		if err != nil {
			return err
		}
		if err := b.api.DeleteWarmPool(ctx, pool.ID, true); err != nil {
			return fmt.Errorf("bench: delete warmup pool: %w", err)
		}
		if err := b.waitNoInstances(ctx, 2*time.Minute); err != nil {
			return err
		}
		limit, err := b.spawnLimit(ctx)
		if err != nil {
			return err
		}
		per := float64(n) / d.Seconds()
		b.progress("warmup %d/%d: %.1f/s, spawn limit %.1f/s", round, warmupRounds, per, limit)
		secs, perS, limits, ratios = append(secs, d.Seconds()), append(perS, per), append(limits, limit), append(ratios, per/limit)
	}
	w := &b.res.Warmup
	w.N, w.Rounds = n, warmupRounds
	w.Seconds = round(median(secs), 4)
	w.PerS = round(median(perS), 1)
	w.SpawnLimitPerS = round(median(limits), 1)
	w.Ratio = round(median(ratios), 3)
	return nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// warmPool creates a pool of n ready echo instances and returns it and how
// long it took from the create to the last instance ready.
func (b *bench) warmPool(ctx context.Context, name string, n int) (*standby.WarmPool, time.Duration, error) {
	start := time.Now()
	pool, err := b.api.CreateWarmPool(ctx, client.CreateWarmPoolRequest{
		Name: name, TemplateRef: "echo", MinReady: &n, MaxReady: &n, CheckoutPolicy: standby.ModeRequire,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("bench: create warmup pool: %w", err)
	}
	if err := b.waitReady(ctx, pool.ID, n, 5*time.Minute); err != nil {
		return nil, 0, err
	}
	return pool, time.Since(start), nil
}

// coldVsWarm compares sequential cold starts with sequential checkouts
// from a ready pool.
func (b *bench) coldVsWarm(ctx context.Context) error {
	n := b.cfg.WarmupN
	pool, _, err := b.warmPool(ctx, "bench-warm", n)
	if err != nil {
		return err
	}
	// Warm: sequential checkouts from the ready pool (it refills behind
	// them; each waits until the pool is full again so every one hits).
	warmN := min(b.cfg.ColdN, n)
	var warm, cold []time.Duration
	var ids []string
	body := []byte(`{"warm_pool":{"id":"` + pool.ID + `","mode":"require","wait_ms":0}}`)
	for range warmN {
		if err := b.waitReady(ctx, pool.ID, n, time.Minute); err != nil {
			return err
		}
		d, resp, err := b.timed(ctx, "POST", "/v1/sandboxes", body, http.StatusCreated)
		if err != nil {
			return fmt.Errorf("bench: warm checkout: %w", err)
		}
		warm = append(warm, d)
		ids = append(ids, jsonString(resp, `{"id":"`))
	}
	if err := b.api.DeleteWarmPool(ctx, pool.ID, true); err != nil {
		return fmt.Errorf("bench: delete warmup pool: %w", err)
	}
	b.progress("cold starts: %d", b.cfg.ColdN)
	coldBody := []byte(`{"template":"echo","warm_pool":{"mode":"bypass"}}`)
	for range b.cfg.ColdN {
		d, resp, err := b.timed(ctx, "POST", "/v1/sandboxes", coldBody, http.StatusCreated)
		if err != nil {
			return fmt.Errorf("bench: cold start: %w", err)
		}
		cold = append(cold, d)
		ids = append(ids, jsonString(resp, `{"id":"`))
	}
	cw := &b.res.ColdVsWarm
	cw.ColdP50US = micros(percentile(cold, 0.50))
	cw.WarmP50US = micros(percentile(warm, 0.50))
	cw.Ratio = round(cw.ColdP50US/cw.WarmP50US, 1)
	if err := b.stopSandboxes(ctx, ids); err != nil {
		return err
	}
	return b.waitNoInstances(ctx, 2*time.Minute)
}

// spawnLimit starts the warmup's processes directly, with the controller's
// warming parallelism (controller.DefaultMaxParallelStarts) and no standby in between: the same
// binary's echo-server on a free port, polled on /healthz every
// millisecond until it answers 200.
func (b *bench) spawnLimit(ctx context.Context) (float64, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	n := b.cfg.WarmupN
	par := controller.DefaultMaxParallelStarts()
	dir, err := os.MkdirTemp(b.dataDir, "spawn-")
	if err != nil {
		return 0, err
	}
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var (
		mu    sync.Mutex
		procs []*exec.Cmd
		next  atomic.Int64
		wg    sync.WaitGroup
		errs  = make(chan error, par)
	)
	defer func() {
		for _, c := range procs {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			c.Wait()
		}
	}()
	b.progress("spawn limit: %d echo-server processes, %d at a time", n, par)
	start := time.Now()
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				port, err := freeTCPPort()
				if err != nil {
					errs <- err
					return
				}
				c := exec.CommandContext(ctx, exe, "echo-server")
				c.Dir = dir
				c.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + strconv.Itoa(port), "HOME=" + dir}
				c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				if err := c.Start(); err != nil {
					errs <- fmt.Errorf("bench: start echo-server: %w", err)
					return
				}
				mu.Lock()
				procs = append(procs, c)
				mu.Unlock()
				url := "http://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
				deadline := time.Now().Add(time.Minute)
				for {
					resp, err := hc.Get(url)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							break
						}
					}
					if time.Now().After(deadline) || ctx.Err() != nil {
						errs <- fmt.Errorf("bench: echo-server on port %d never answered /healthz", port)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(n) / secs, nil
}

func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// request builds an authenticated API request.
func (b *bench) request(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+b.key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// timed sends one request on the load client and returns its latency and
// body; a status other than want is an error.
func (b *bench) timed(ctx context.Context, method, path string, body []byte, want int) (time.Duration, []byte, error) {
	req, err := b.request(ctx, method, path, body)
	if err != nil {
		return 0, nil, err
	}
	t0 := time.Now()
	resp, err := b.load.Do(req)
	if err != nil {
		return 0, nil, err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil {
		return 0, nil, err
	}
	if resp.StatusCode != want {
		return 0, nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(out))
	}
	return d, out, nil
}

// phase is what one load phase measured.
type phase struct {
	samples      []time.Duration
	wall         time.Duration
	hits, misses int
}

func (p *phase) add(q *phase) {
	p.samples = append(p.samples, q.samples...)
	p.wall += q.wall
	p.hits += q.hits
	p.misses += q.misses
}

func (p *phase) rps() float64 { return float64(len(p.samples)) / p.wall.Seconds() }

// run sends requests from conc workers, either count of them in all or,
// when count is 0, for dur. Latency runs from sending to the last body
// byte. A 2xx is a hit, a 503 warm_pool_unavailable a miss, anything else
// ends the run. onBody, if set, sees every 2xx body.
func (b *bench) run(ctx context.Context, mk func() (*http.Request, error), conc, count int, dur time.Duration, onBody func([]byte)) (*phase, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		left    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		results = make([]*phase, conc)
	)
	left.Store(int64(count))
	deadline := time.Now().Add(dur)
	fail := func(err error) {
		mu.Lock()
		if firstEr == nil {
			firstEr = err
		}
		mu.Unlock()
		cancel()
	}
	start := time.Now()
	for w := range conc {
		p := &phase{}
		if count > 0 {
			p.samples = make([]time.Duration, 0, count/conc+1)
		} else {
			p.samples = make([]time.Duration, 0, 1<<14)
		}
		results[w] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for ctx.Err() == nil {
				if count > 0 {
					if left.Add(-1) < 0 {
						return
					}
				} else if time.Now().After(deadline) {
					return
				}
				req, err := mk()
				if err != nil {
					fail(err)
					return
				}
				t0 := time.Now()
				resp, err := b.load.Do(req)
				if err != nil {
					fail(err)
					return
				}
				buf.Reset()
				_, err = buf.ReadFrom(resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if err != nil {
					fail(err)
					return
				}
				switch {
				case resp.StatusCode < 300:
					p.samples = append(p.samples, d)
					p.hits++
					if onBody != nil {
						onBody(buf.Bytes())
					}
				case resp.StatusCode == http.StatusServiceUnavailable && bytes.Contains(buf.Bytes(), []byte(standby.EWarmPoolUnavailable)):
					p.samples = append(p.samples, d)
					p.misses++
				default:
					fail(fmt.Errorf("bench: %s %s: HTTP %d: %s", req.Method, req.URL.Path, resp.StatusCode, bytes.TrimSpace(buf.Bytes())))
					return
				}
			}
		}()
	}
	wg.Wait()
	total := &phase{wall: time.Since(start)}
	if firstEr != nil {
		return nil, firstEr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, p := range results {
		total.add(p)
	}
	total.wall = time.Since(start)
	return total, nil
}

func figures(c1, c32 *phase) latencyFigures {
	return latencyFigures{
		C1P50US:  micros(percentile(c1.samples, 0.50)),
		C1P99US:  micros(percentile(c1.samples, 0.99)),
		C32P50US: micros(percentile(c32.samples, 0.50)),
		C32P99US: micros(percentile(c32.samples, 0.99)),
		C32RPS:   round(c32.rps(), 0),
	}
}

// percentile returns the q-quantile (nearest rank) of the samples.
func percentile(samples []time.Duration, q float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	i := int(float64(len(s))*q+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func micros(d time.Duration) float64 { return round(float64(d)/float64(time.Microsecond), 1) }

func round(v float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// writeHeapProfile writes the live heap (after a collection) to file.
func writeHeapProfile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("bench: memprofile: %w", err)
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("bench: memprofile: %w", err)
	}
	return f.Close()
}

// fsyncLatency returns the median time of n rounds of writing 4 KiB to a
// file in dir and fdatasyncing it: what one durable commit costs this disk
// at least.
func fsyncLatency(dir string, n int) (time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, fmt.Errorf("bench: fsync probe: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	samples := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%16)*4096); err != nil {
			return 0, fmt.Errorf("bench: fsync probe: %w", err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, fmt.Errorf("bench: fsync probe: %w", err)
		}
		samples = append(samples, time.Since(start))
	}
	slices.Sort(samples)
	return samples[len(samples)/2], nil
}

// heapAlloc returns the live heap of this process (the server's and
// bench's) after a full collection.
func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// waitReady polls the pool's status until n instances are ready,
// reporting progress every second. Every 10 ms is often enough to time a
// warmup of 100 to within 2%, and rarely enough to leave the warmup its
// CPU: a status read costs the server about 0.2 ms, so polling every 2 ms
// took a tenth of it.
func (b *bench) waitReady(ctx context.Context, poolID string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		st, err := b.api.WarmPoolStatus(ctx, poolID)
		if err != nil {
			return fmt.Errorf("bench: pool status: %w", err)
		}
		if st.Ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: pool %s has %d/%d ready after %s (warming %d, failed %d)", poolID, st.Ready, n, timeout, st.Warming, st.Failed)
		}
		if time.Since(lastLog) >= time.Second {
			b.progress("warming %d/%d…", st.Ready, n)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stopSandboxes asks for the sandboxes to stop, a few at a time.
func (b *bench) stopSandboxes(ctx context.Context, ids []string) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				if err := b.api.DeleteSandbox(ctx, ids[i]); err != nil {
					errs <- fmt.Errorf("bench: stop sandbox %s: %w", ids[i], err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// waitNoInstances waits until no instance process of the bench server is
// left and the agent's background work is done, so the next phase has the
// machine to itself.
func (b *bench) waitNoInstances(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		// An instance's state file goes last, once the agent has
		// torn it down (cgroup, mounts, artefacts): the next phase
		// must not share the CPU with that work.
		// The process scan only once every state file is gone.
		n := len(stateFiles(b.dataDir, ""))
		if n == 0 {
			n = len(instancePIDs(b.dataDir, ""))
		}
		// The agent makes its log stock again once idle: the next
		// phase must not share the CPU with that either.
		if n == 0 && agent.LogStockFull(b.dataDir) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d instances still running or being torn down after %s (or the agent's log stock not made again)", n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cleanup stops what the server left running (it leaves instances up on
// purpose when it stops): sandboxes and pools through the API first, then
// the server, then SIGKILL for any instance process still there.
func (b *bench) cleanup(served chan error, stopServer context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b.api != nil {
		if sbs, err := b.api.AllSandboxes(ctx, client.SandboxListOptions{State: standby.SandboxRunning, PageSize: standby.MaxPageSize}); err == nil {
			ids := make([]string, len(sbs))
			for i, sb := range sbs {
				ids[i] = sb.ID
			}
			b.stopSandboxes(ctx, ids)
		}
		if pools, err := b.api.AllWarmPools(ctx, client.ListOptions{PageSize: standby.MaxPageSize}); err == nil {
			for _, p := range pools {
				b.api.DeleteWarmPool(ctx, p.ID, true)
			}
		}
		b.waitNoInstances(ctx, 30*time.Second)
	}
	stopServer()
	if err := <-served; err != nil {
		fmt.Fprintf(b.log, "bench: server: %v\n", err)
	}
	killInstances(b.dataDir)
}

// printBenchTable prints one row per figure, grouped by section.
func printBenchTable(w io.Writer, r *benchResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tFIGURE\tVALUE")
	// The rows come from the JSON form so the table and --json never
	// disagree on names.
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(raw, &sections); err != nil {
		return err
	}
	for _, name := range []string{"noop", "checkout", "checkout_normal", "warmup", "cold_vs_warm", "memory", "machine"} {
		if sections[name] == nil {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(sections[name]))
		dec.UseNumber()
		// Read the object token by token to keep the field order.
		if _, err := dec.Token(); err != nil {
			return err
		}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return err
			}
			var v any
			if err := dec.Decode(&v); err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\n", name, k, v)
		}
	}
	return tw.Flush()
}
