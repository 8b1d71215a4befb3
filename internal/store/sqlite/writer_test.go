package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// groupWorld is a project with a pool of n ready instances.
func groupWorld(t *testing.T, s *Store, n int) (projectID, poolID string) {
	t.Helper()
	ctx := t.Context()
	now := standby.Now()
	p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "group"}
	if err := standby.CreateProjectWithBuiltins(ctx, s, p, now); err != nil {
		t.Fatal(err)
	}
	b, err := standby.ResolveTemplateRef(ctx, s, p.ID, "echo")
	if err != nil {
		t.Fatal(err)
	}
	pool := &standby.WarmPool{ID: standby.NewID(standby.PrefixWarmPool), ProjectID: p.ID, Name: "echo", TemplateRef: "echo",
		MinReady: n, MaxReady: n, CreatedAt: now, UpdatedAt: now}
	pool.ApplyDefaults()
	pool.SetResolvedBuild(b)
	if err := s.CreateWarmPool(ctx, pool); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := now.Add(time.Duration(i) * time.Microsecond)
		inst := &standby.Instance{ID: standby.NewID(standby.PrefixInstance), ProjectID: p.ID, PoolID: pool.ID, State: standby.InstanceReady,
			TemplateBuildID: b.ID, HostID: "h", Address: "127.0.0.1", Ports: map[string]int{"http": 40000 + i}, CreatedAt: now, ReadyAt: &r}
		if err := s.CreateInstance(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	return p.ID, pool.ID
}

// holdWriter queues a write that blocks until the returned release is
// called, and returns once the writer is inside it: everything queued
// meanwhile lands in the next batch together.
func holdWriter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	inside, unblock, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.inTx(context.Background(), func(context.Context, *sql.Tx) error {
			close(inside)
			<-unblock
			return nil
		})
	}()
	<-inside
	return func() {
		close(unblock)
		if err := <-done; err != nil {
			t.Errorf("held write: %v", err)
		}
	}
}

// waitPending waits until n writes are queued behind the held one.
func waitPending(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.writer.mu.Lock()
		got := len(s.writer.pending)
		s.writer.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommit queues many checkouts and failing writes behind a held
// write so that they all share one transaction, and checks that the batch
// behaves as if each write had its own: exactly one checkout per ready
// instance, the misses and the failing writes change nothing, a panic
// reaches its own caller only, and everything acknowledged is on disk after
// a reopen.
func TestGroupCommit(t *testing.T) {
	const ready, checkouts = 50, 64
	path := filepath.Join(t.TempDir(), "standby.db")
	s, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	projectID, poolID := groupWorld(t, s, ready)
	taken := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "taken"}
	if err := s.CreateProject(t.Context(), taken); err != nil {
		t.Fatal(err)
	}

	release := holdWriter(t, s)
	before := s.writer.commits.Load()
	type result struct {
		sb  *standby.Sandbox
		err error
	}
	results := make([]result, checkouts)
	var wg sync.WaitGroup
	var dupErr error
	var panicked any
	queued := 0
	for i := range checkouts {
		if i == checkouts/2 {
			// A failing write and a panicking one amid the checkouts.
			wg.Go(func() {
				dupErr = s.CreateProject(context.Background(), &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "taken"})
			})
			wg.Go(func() {
				defer func() { panicked = recover() }()
				s.UpdateProject(context.Background(), taken.ID, func(p *standby.Project) error {
					p.Name = "renamed"
					panic("boom")
				})
			})
			queued += 2
			waitPending(t, s, queued)
		}
		wg.Go(func() {
			now := standby.Now()
			sb, err := s.Checkout(context.Background(), standby.CheckoutRequest{ProjectID: projectID, PoolIDs: []string{poolID}, Now: now,
				Sandbox: &standby.Sandbox{ID: standby.NewID(standby.PrefixSandbox), Template: "echo", State: standby.SandboxRunning,
					CreatedAt: now, StartedAt: now, ExpiresAt: now.Add(time.Minute)}})
			results[i] = result{sb, err}
		})
		queued++
		waitPending(t, s, queued)
	}
	release()
	wg.Wait()

	if got := s.writer.commits.Load() - before; got != 2 {
		t.Errorf("%d commits for the held write and %d queued writes, want 2", got, queued)
	}
	if !standby.IsCode(dupErr, standby.EConflict) {
		t.Errorf("duplicate project in the batch: %v, want conflict", dupErr)
	}
	if panicked != "boom" {
		t.Errorf("panic in the batch reached its caller as %v, want boom", panicked)
	}
	byInstance := map[string]string{}
	misses := 0
	for _, r := range results {
		switch {
		case r.err == nil:
			if other, dup := byInstance[r.sb.InstanceID]; dup {
				t.Errorf("instance %s claimed by %s and %s", r.sb.InstanceID, other, r.sb.ID)
			}
			byInstance[r.sb.InstanceID] = r.sb.ID
		case standby.IsCode(r.err, standby.EWarmPoolUnavailable):
			misses++
		default:
			t.Errorf("checkout: %v", r.err)
		}
	}
	if len(byInstance) != ready || misses != checkouts-ready {
		t.Fatalf("%d checkouts succeeded and %d missed, want %d and %d", len(byInstance), misses, ready, checkouts-ready)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	for inst, sbID := range byInstance {
		sb, err := s2.FindSandbox(t.Context(), sbID)
		if err != nil || sb.InstanceID != inst {
			t.Errorf("sandbox %s after reopen: %+v, %v", sbID, sb, err)
		}
		i, err := s2.FindInstance(t.Context(), inst)
		if err != nil || i.State != standby.InstanceClaimed || i.SandboxID == nil || *i.SandboxID != sbID {
			t.Errorf("instance %s after reopen: %+v, %v", inst, i, err)
		}
	}
	if p, err := s2.FindProject(t.Context(), taken.ID); err != nil || p.Name != "taken" {
		t.Errorf("project after the panicking update: %+v, %v", p, err)
	}
	if _, err := s2.FindProjectByName(t.Context(), "renamed"); !standby.IsCode(err, standby.ENotFound) {
		t.Errorf("the panicking update was kept: %v", err)
	}
}

// TestGroupCommitCancelled checks that a write whose context ends while it
// waits for its batch is not run, and that the writes beside it are.
func TestGroupCommitCancelled(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "standby.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, c := range []context.Context{ctx, context.Background()} {
		wg.Go(func() {
			errs[i] = s.CreateProject(c, &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: fmt.Sprint("p", i)})
		})
		waitPending(t, s, i+1)
	}
	cancel()
	release()
	wg.Wait()
	if !errors.Is(errs[0], context.Canceled) {
		t.Errorf("cancelled write: %v, want context.Canceled", errs[0])
	}
	if errs[1] != nil {
		t.Errorf("write beside it: %v", errs[1])
	}
	if _, err := s.FindProjectByName(t.Context(), "p0"); !standby.IsCode(err, standby.ENotFound) {
		t.Errorf("cancelled write was stored: %v", err)
	}
	if _, err := s.FindProjectByName(t.Context(), "p1"); err != nil {
		t.Errorf("write beside it: %v", err)
	}
}

// TestWriteAfterClose checks that a closed store refuses writes instead of
// hanging.
func TestWriteAfterClose(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "standby.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err = s.CreateProject(t.Context(), &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "late"})
	if !errors.Is(err, errClosed) {
		t.Fatalf("write after Close: %v, want %v", err, errClosed)
	}
}
