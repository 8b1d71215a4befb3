package sqlite

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// A real power-loss test is impossible here (it needs the disk's cache to
// vanish under a running kernel); these tests check what the durability
// argument of walSyncer rests on: the caller hears back only after an
// fdatasync that followed its commit, the commit is in the WAL file on
// disk by then, and the writer commits the next batches while a sync runs.

// TestAcknowledgedWriteIsInTheSyncedWAL copies the database and its WAL as
// they are on disk right after a write is acknowledged, without Close and
// so without any checkpoint, and finds the write in the copy.
func TestAcknowledgedWriteIsInTheSyncedWAL(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	path := filepath.Join(dir, "standby.db")
	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.writer.syncer == nil {
		t.Fatal("FULL store has no WAL syncer")
	}
	before := s.writer.syncer.syncs.Load()
	p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "durable", CreatedAt: standby.Now()}
	if err := s.CreateProject(ctx, p); err != nil {
		t.Fatal(err)
	}
	if after := s.writer.syncer.syncs.Load(); after <= before {
		t.Fatalf("write acknowledged after %d WAL syncs, want at least one", after-before)
	}

	copyDir := t.TempDir()
	for _, suffix := range []string{"", "-wal"} {
		copyFile(t, path+suffix, filepath.Join(copyDir, "standby.db"+suffix))
	}
	c, err := Open(ctx, Config{Path: filepath.Join(copyDir, "standby.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got, err := c.FindProject(ctx, p.ID)
	if err != nil || got.Name != "durable" {
		t.Fatalf("acknowledged project in the on-disk copy: %+v, %v", got, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAnswerWaitsForTheSync holds the syncer inside its sync: a write is
// committed (other readers see it) but its caller is not answered, and
// further writes still commit meanwhile; releasing the sync answers all.
func TestAnswerWaitsForTheSync(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, Config{Path: filepath.Join(t.TempDir(), "standby.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	entered, release := make(chan struct{}, 100), make(chan struct{})
	s.writer.syncer.beforeSync = func() {
		entered <- struct{}{}
		<-release
	}
	write := func(name string) (string, chan error) {
		p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: name, CreatedAt: standby.Now()}
		done := make(chan error, 1)
		go func() { done <- s.CreateProject(ctx, p) }()
		return p.ID, done
	}
	committed := func(id string) bool {
		_, err := s.FindProject(ctx, id)
		return err == nil
	}
	first, firstDone := write("first")
	<-entered // the first batch committed and its sync is held
	if !committed(first) {
		t.Fatal("first write not visible while its sync runs")
	}
	second, secondDone := write("second")
	deadline := time.Now().Add(10 * time.Second)
	for !committed(second) {
		if time.Now().After(deadline) {
			t.Fatal("the writer did not commit the next batch while a sync ran")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-firstDone:
		t.Fatalf("first write answered (%v) before its sync finished", err)
	case err := <-secondDone:
		t.Fatalf("second write answered (%v) before its sync finished", err)
	default:
	}
	close(release)
	for _, done := range []chan error{firstDone, secondDone} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestNormalAnswersAtCommit checks that NORMAL runs no syncer.
func TestNormalAnswersAtCommit(t *testing.T) {
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "standby.db"), Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.writer.syncer != nil {
		t.Fatal("NORMAL store syncs the WAL")
	}
	if err := s.CreateProject(t.Context(), &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: "n", CreatedAt: standby.Now()}); err != nil {
		t.Fatal(err)
	}
}
