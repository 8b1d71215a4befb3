package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// LogStockSize is how many empty log files an agent keeps made ahead of
// starts: two per instance, so a pool of LogStockSize/2 instances warms
// without creating a file.
const LogStockSize = 256

// stockPrefix names the stock's files in the instances dir.
const stockPrefix = ".stock-"

// stockPoll is how often the stock is topped up while no start runs.
const stockPoll = 250 * time.Millisecond

// logStock is a supply of empty files in the instances dir that a start
// renames into its log files instead of creating them. Creating a file is
// the costliest file operation of a start on disk: ext4 without a journal
// (this project's machines) scans past every inode of the block group
// deleted in the last minutes, so on a host that deletes ended instances'
// logs each creation can cost most of a millisecond. The agent makes the
// stock's files while no start is in progress: the work is done, but not
// while anyone waits for an instance.
type logStock struct {
	dir  string
	mu   sync.Mutex
	free []string
	seq  int
}

// newLogStock takes over the stock files an earlier agent left in dir.
func newLogStock(dir string) *logStock {
	s := &logStock{dir: dir}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), stockPrefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if k, err := strconv.Atoi(n); err == nil {
			s.free = append(s.free, filepath.Join(dir, e.Name()))
			s.seq = max(s.seq, k+1)
		}
	}
	return s
}

// open opens the log file path for appending, renaming a stock file to it
// when one is left (never over an existing file).
func (s *logStock) open(path string) (*os.File, error) {
	s.mu.Lock()
	var spare string
	if n := len(s.free); n > 0 {
		spare, s.free = s.free[n-1], s.free[:n-1]
	}
	s.mu.Unlock()
	if spare != "" {
		// A spare someone removed is dropped; one that could not take
		// an existing path's place is kept.
		if err := unix.Renameat2(unix.AT_FDCWD, spare, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE); errors.Is(err, unix.EEXIST) {
			s.put(spare)
		}
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
}

func (s *logStock) put(p string) {
	s.mu.Lock()
	s.free = append(s.free, p)
	s.mu.Unlock()
}

// fill makes stock files until the stock is full or busy reports a start
// in progress.
func (s *logStock) fill(busy func() bool) {
	for !busy() {
		s.mu.Lock()
		full := len(s.free) >= LogStockSize
		seq := s.seq
		s.seq++
		s.mu.Unlock()
		if full {
			return
		}
		p := filepath.Join(s.dir, stockPrefix+strconv.Itoa(seq))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return // tried again at the next poll
		}
		f.Close()
		s.put(p)
	}
}

// LogStockFull reports whether the agent on dataDir has its log stock
// full, that is, no stock work pending: for tools (bench) that measure
// the machine and must not share it with the agent's background work.
func LogStockFull(dataDir string) bool {
	files, _ := filepath.Glob(filepath.Join(dataDir, "instances", stockPrefix+"*"))
	return len(files) >= LogStockSize
}
