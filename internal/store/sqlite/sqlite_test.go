package sqlite_test

import (
	"fmt"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/internal/store/sqlite"
	"github.com/standbyhq/standby/internal/store/storetest"
)

func open(t testing.TB, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: path})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) standby.Store {
		return open(t, filepath.Join(t.TempDir(), "standby.db"))
	})
}

func TestOpenConfig(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     sqlite.Config
		wantErr bool
	}{
		{"no path", sqlite.Config{}, true},
		{"bad synchronous", sqlite.Config{Path: filepath.Join(dir, "a.db"), Synchronous: "OFF"}, true},
		{"normal", sqlite.Config{Path: filepath.Join(dir, "b.db"), Synchronous: "normal"}, false},
		{"nested directory", sqlite.Config{Path: filepath.Join(dir, "x", "y", "c.db")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sqlite.Open(t.Context(), tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Open: err %v, want error %v", err, tt.wantErr)
			}
			if s != nil {
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatalf("second Close: %v", err)
				}
			}
		})
	}
}

// TestReopen checks that acknowledged writes are on disk: a second Open of
// the same file (migrations already applied) sees every record.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "standby.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	now := standby.Now()
	p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "default"}
	if err := standby.CreateProjectWithBuiltins(ctx, s, p, now); err != nil {
		t.Fatal(err)
	}
	b, err := standby.ResolveTemplateRef(ctx, s, p.ID, "echo")
	if err != nil {
		t.Fatal(err)
	}
	pool := &standby.WarmPool{ID: standby.NewID(standby.PrefixWarmPool), ProjectID: p.ID, Name: "echo", TemplateRef: "echo",
		MinReady: 1, MaxReady: 1, CreatedAt: now, UpdatedAt: now}
	pool.ApplyDefaults()
	pool.SetResolvedBuild(b)
	if err := s.CreateWarmPool(ctx, pool); err != nil {
		t.Fatal(err)
	}
	inst := &standby.Instance{ID: standby.NewID(standby.PrefixInstance), ProjectID: p.ID, PoolID: pool.ID, State: standby.InstanceReady,
		TemplateBuildID: b.ID, HostID: "h", Address: "127.0.0.1", Ports: map[string]int{"http": 4000}, CreatedAt: now, ReadyAt: &now}
	if err := s.CreateInstance(ctx, inst); err != nil {
		t.Fatal(err)
	}
	sb, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: p.ID, PoolIDs: []string{pool.ID}, Now: now,
		Sandbox: &standby.Sandbox{ID: standby.NewID(standby.PrefixSandbox), Template: "echo", State: standby.SandboxRunning,
			CreatedAt: now, StartedAt: now, ExpiresAt: now.Add(time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, path)
	gotP, err := s2.FindProjectByName(ctx, "default")
	if err != nil || gotP.ID != p.ID {
		t.Fatalf("project after reopen: %+v, %v", gotP, err)
	}
	gotB, err := s2.FindBuild(ctx, p.ID, b.ID)
	if err != nil || gotB.CompatibilityKey != b.CompatibilityKey {
		t.Fatalf("build after reopen: %+v, %v", gotB, err)
	}
	gotSB, err := s2.FindSandbox(ctx, sb.ID)
	if err != nil || gotSB.InstanceID != inst.ID || gotSB.Ports["http"] != 4000 || !gotSB.CreatedAt.Equal(now) {
		t.Fatalf("sandbox after reopen: %+v, %v", gotSB, err)
	}
	gotPool, err := s2.FindWarmPool(ctx, pool.ID)
	if err != nil || gotPool.Status.Claimed != 1 || gotPool.Status.Ready != 0 {
		t.Fatalf("pool after reopen: %+v, %v", gotPool, err)
	}
}

// benchWorld is a project with a pool of n ready instances.
func benchWorld(b *testing.B, s *sqlite.Store, n int, labels bool) (string, string) {
	b.Helper()
	ctx := b.Context()
	now := standby.Now()
	p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "bench-" + standby.NewSecret(8)}
	if err := standby.CreateProjectWithBuiltins(ctx, s, p, now); err != nil {
		b.Fatal(err)
	}
	build, err := standby.ResolveTemplateRef(ctx, s, p.ID, "echo")
	if err != nil {
		b.Fatal(err)
	}
	pool := &standby.WarmPool{ID: standby.NewID(standby.PrefixWarmPool), ProjectID: p.ID, Name: "echo", TemplateRef: "echo",
		MinReady: n, MaxReady: n, CreatedAt: now, UpdatedAt: now, Labels: map[string]string{"region": "eu"}}
	pool.ApplyDefaults()
	pool.SetResolvedBuild(build)
	if err := s.CreateWarmPool(ctx, pool); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		r := now.Add(time.Duration(i) * time.Microsecond)
		inst := &standby.Instance{ID: standby.NewID(standby.PrefixInstance), ProjectID: p.ID, PoolID: pool.ID, State: standby.InstanceReady,
			TemplateBuildID: build.ID, HostID: "h", Address: "127.0.0.1", Ports: map[string]int{"http": 40000 + i%20000}, CreatedAt: now, ReadyAt: &r}
		if labels {
			inst.Labels = map[string]string{"slot": fmt.Sprint(i % 10)}
		}
		if err := s.CreateInstance(ctx, inst); err != nil {
			b.Fatal(err)
		}
	}
	return p.ID, pool.ID
}

func benchSandbox(now time.Time) *standby.Sandbox {
	return &standby.Sandbox{ID: standby.NewID(standby.PrefixSandbox), Template: "echo", State: standby.SandboxRunning,
		CreatedAt: now, StartedAt: now, TimeoutMS: 300000, ExpiresAt: now.Add(5 * time.Minute),
		WarmPoolCheckout: standby.WarmPoolCheckout{Source: standby.SourceWarmPool, Mode: standby.ModeRequire}}
}

func BenchmarkCheckout(b *testing.B) {
	for _, bc := range []struct {
		name      string
		selectors []standby.Selector
		sync      string
	}{
		{"plain", nil, "FULL"},
		{"plain-sync-normal", nil, "NORMAL"},
		{"selectors", []standby.Selector{{Labels: map[string]string{"slot": "11"}}, {Labels: map[string]string{"region": "eu", "slot": "3"}}}, "FULL"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := sqlite.Open(b.Context(), sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: bc.sync})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			const poolSize = 1000
			projectID, poolID := benchWorld(b, s, poolSize, bc.selectors != nil)
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer()
			left := poolSize
			for b.Loop() {
				// The selector case claims slot 3 (a tenth of the pool) only.
				if left == 0 || (bc.selectors != nil && left <= poolSize*9/10) {
					b.StopTimer()
					projectID, poolID = benchWorld(b, s, poolSize, bc.selectors != nil)
					left = poolSize
					b.StartTimer()
				}
				_, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: projectID, PoolIDs: []string{poolID},
					Selectors: bc.selectors, Sandbox: benchSandbox(standby.Now()), Now: standby.Now()})
				if err != nil {
					b.Fatal(err)
				}
				left--
			}
		})
	}
}

// BenchmarkCheckoutParallel runs checkouts from 16 goroutines per CPU, as
// concurrent API requests do: the group commit lets them share
// transactions and fsyncs. The pool is filled (outside the timer) with one
// instance per checkout, concurrently so that the fill batches too.
func BenchmarkCheckoutParallel(b *testing.B) {
	for _, sync := range []string{"FULL", "NORMAL"} {
		b.Run(sync, func(b *testing.B) {
			s, err := sqlite.Open(b.Context(), sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db"), Synchronous: sync})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			projectID, poolID := benchWorld(b, s, 0, false)
			pool, err := s.FindWarmPool(b.Context(), poolID)
			if err != nil {
				b.Fatal(err)
			}
			fillParallel(b, s, pool, b.N)
			ctx := b.Context()
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					now := standby.Now()
					if _, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: projectID, PoolIDs: []string{poolID},
						Sandbox: benchSandbox(now), Now: now}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// fillParallel adds n ready instances to a pool from 32 goroutines.
func fillParallel(b *testing.B, s *sqlite.Store, pool *standby.WarmPool, n int) {
	b.Helper()
	now := standby.Now()
	var wg stdsync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				r := now.Add(time.Duration(i) * time.Microsecond)
				inst := &standby.Instance{ID: standby.NewID(standby.PrefixInstance), ProjectID: pool.ProjectID, PoolID: pool.ID,
					State: standby.InstanceReady, TemplateBuildID: *pool.ResolvedTemplateBuildID, HostID: "h", Address: "127.0.0.1",
					Ports: map[string]int{"http": 40000 + i%20000}, CreatedAt: now, ReadyAt: &r}
				if err := s.CreateInstance(b.Context(), inst); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

func BenchmarkFindSandboxesPage(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "bench.db"))
	projectID, poolID := benchWorld(b, s, 500, false)
	ctx := b.Context()
	for range 500 {
		if _, err := s.Checkout(ctx, standby.CheckoutRequest{ProjectID: projectID, PoolIDs: []string{poolID},
			Sandbox: benchSandbox(standby.Now()), Now: standby.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		items, _, err := s.FindSandboxes(ctx, standby.SandboxFilter{ProjectID: projectID, Page: standby.Page{Size: 100}})
		if err != nil || len(items) != 100 {
			b.Fatalf("%d items, %v", len(items), err)
		}
	}
}

func BenchmarkFindWarmPoolsPage(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "bench.db"))
	projectID, _ := benchWorld(b, s, 200, false)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		items, _, err := s.FindWarmPools(ctx, standby.WarmPoolFilter{ProjectID: projectID})
		if err != nil || len(items) != 1 {
			b.Fatalf("%d items, %v", len(items), err)
		}
	}
}

// TestPanicInUpdate checks that a panicking update function does not keep
// the single write connection: later writes still go through.
func TestPanicInUpdate(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "standby.db"))
	now := standby.Now()
	p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "p", CreatedAt: now, UpdatedAt: now}
	if err := s.CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("update did not panic")
			}
		}()
		s.UpdateProject(ctx, p.ID, func(*standby.Project) error { panic("boom") })
	}()
	got, err := s.UpdateProject(ctx, p.ID, func(p *standby.Project) error { p.Name = "q"; return nil })
	if err != nil || got.Version != 2 {
		t.Fatalf("update after panic: %+v, %v", got, err)
	}
}
