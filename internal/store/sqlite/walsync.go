package sqlite

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
)

// walSyncer makes committed batches durable off the writer's path: the
// write connection runs with synchronous=NORMAL, so a commit appends its
// frames to the WAL file without syncing it, and the writer hands each
// committed batch here and goes on with the next one. The syncer takes
// every batch handed over so far, fdatasyncs the WAL file once and only
// then answers their callers. One sync thus covers as many commits as ran
// during the previous one, and the writer never waits for the disk.
//
// Why every answered write is durable on power loss:
//   - In WAL mode a transaction is committed once its frames, ending with
//     a commit frame, are in the WAL; recovery after a crash replays every
//     frame up to the last valid commit frame (frames are checksummed and
//     salted, so a torn or stale tail is ignored, never misread). A commit
//     is therefore durable once the WAL bytes written before it returned
//     are on stable storage: fdatasync of the file (any descriptor of the
//     same inode) after the commit returned guarantees exactly that, for
//     that commit and every earlier one.
//   - Checkpoints cannot lose a commit that was not synced yet: with
//     synchronous=NORMAL SQLite syncs the WAL before a checkpoint copies
//     frames into the database file, and syncs the database file before
//     the checkpoint completes; only after a complete checkpoint does it
//     restart the WAL from its beginning (sqlite.org/pragma.html#pragma_synchronous,
//     sqlite.org/wal.html). A frame is thus overwritten only once its
//     content is synced in the database file.
//   - The WAL file is only deleted when the last connection to the database
//     closes, after a full checkpoint (synced, as above). The syncer still
//     checks before each sync that its descriptor is the file at the WAL's
//     path, and reopens it (and syncs the directory, for the file's own
//     entry) when it is not.
//
// A caller is answered only after the sync, so every 2xx is durable. What
// this mode gives up against SQLite's own FULL is only read isolation from
// the future: another request may read a committed write up to one sync
// before its own caller is answered; a power loss in that window loses a
// write nobody was told succeeded.
//
// A failed fdatasync leaves the state of the file's pages unknown (a
// retried fsync may report success for pages the kernel dropped), so the
// syncer fails that sync's writes and every later one: the store must be
// reopened, which recovers from what is really on disk.
type walSyncer struct {
	path string // <db>-wal
	f    *os.File

	mu      sync.Mutex
	pending []*writeOp
	closed  bool
	failed  error
	wake    chan struct{} // buffered(1)
	stopped chan struct{}

	syncs atomic.Int64 // fdatasyncs done (tests, stats)
	// beforeSync, when set (tests), runs before each fdatasync.
	beforeSync func()
}

func newWALSyncer(dbPath string) *walSyncer {
	s := &walSyncer{path: dbPath + "-wal", wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go s.run()
	return s
}

// hand queues the ops of a committed batch; they are answered after the
// next sync.
func (s *walSyncer) hand(ops []*writeOp) {
	s.mu.Lock()
	s.pending = append(s.pending, ops...)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close syncs and answers what is queued, then stops. The writer must not
// hand anything after it.
func (s *walSyncer) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	s.mu.Unlock()
	<-s.stopped
	if s.f != nil {
		s.f.Close()
	}
}

func (s *walSyncer) run() {
	defer close(s.stopped)
	for range s.wake {
		for {
			s.mu.Lock()
			ops := s.pending
			s.pending = nil
			s.mu.Unlock()
			if len(ops) == 0 {
				break
			}
			err := s.sync()
			for _, op := range ops {
				if err != nil && op.err == nil && op.pval == nil {
					op.err = err
				}
				close(op.done)
			}
		}
	}
}

// sync makes every WAL byte written so far durable.
func (s *walSyncer) sync() error {
	if s.failed != nil {
		return s.failed
	}
	if err := s.open(); err != nil {
		return err
	}
	if s.beforeSync != nil {
		s.beforeSync()
	}
	if err := syscall.Fdatasync(int(s.f.Fd())); err != nil {
		s.failed = fmt.Errorf("sqlite: sync WAL: %w (writes are refused until the store is reopened)", err)
		return s.failed
	}
	s.syncs.Add(1)
	return nil
}

// open makes s.f the file now at the WAL's path.
func (s *walSyncer) open() error {
	cur, err := os.Stat(s.path)
	if err != nil {
		// The WAL exists from the first write on and lives as long as
		// the store's connections: its absence after a commit is not a
		// state we can reason about.
		return fmt.Errorf("sqlite: sync WAL: %w", err)
	}
	if s.f != nil {
		if have, err := s.f.Stat(); err == nil && os.SameFile(have, cur) {
			return nil
		}
		s.f.Close()
		s.f = nil
	}
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("sqlite: sync WAL: %w", err)
	}
	// The file is new to us, maybe new on disk: its directory entry must
	// be durable too.
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		f.Close()
		return err
	}
	s.f = f
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sqlite: sync directory: %w", err)
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) {
		err = nil // file systems that cannot sync directories
	}
	return errors.Join(err, d.Close())
}
