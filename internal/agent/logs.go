package agent

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/standbyhq/standby"
)

// followPoll is how often a followed log is checked for new bytes.
const followPoll = 100 * time.Millisecond

// Logs copies the instance's stdout or stderr to w: the last opt.Tail
// lines (all when 0), then, with opt.Follow, new output until ctx ends or
// the instance stops or dies (what it wrote last is still copied). Logs stay
// readable after the instance ended, until the sweeper deletes them.
// not_found: no such instance; validation_failed: a bad stream or tail.
func (a *Local) Logs(ctx context.Context, id string, opt standby.LogOptions, w io.Writer) error {
	stream := "stdout"
	switch opt.Stream {
	case "", "stdout":
	case "stderr":
		stream = "stderr"
	default:
		return standby.FieldError("stream", "must be stdout or stderr")
	}
	if opt.Tail < 0 {
		return standby.FieldError("tail", "must be >= 0")
	}
	if validID(id) != nil {
		return standby.Errorf(standby.ENotFound, "instance %s not found", id)
	}
	f, err := os.Open(a.paths(id).logPath(stream))
	if errors.Is(err, fs.ErrNotExist) {
		return standby.Errorf(standby.ENotFound, "instance %s not found", id)
	}
	if err != nil {
		return err
	}
	defer f.Close()

	if opt.Tail > 0 {
		off, err := tailOffset(f, opt.Tail)
		if err != nil {
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return err
		}
	}
	if _, err := io.Copy(w, f); err != nil {
		return err
	}
	if !opt.Follow {
		return nil
	}
	flush(w)

	a.mu.Lock()
	inst := a.running[id]
	a.mu.Unlock()
	if inst == nil {
		return nil
	}
	t := time.NewTicker(followPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-inst.endCh:
			_, err := io.Copy(w, f)
			return err
		case <-a.base.Done():
			_, err := io.Copy(w, f)
			return err
		case <-t.C:
		}
		n, err := io.Copy(w, f)
		if err != nil {
			return err
		}
		if n > 0 {
			flush(w)
		}
	}
}

// flush pushes followed output to the client at once when w buffers
// (an http.ResponseWriter).
func flush(w io.Writer) {
	if f, ok := w.(interface{ Flush() }); ok {
		f.Flush()
	}
}

// tailOffset returns where the last n lines of f begin. A final line
// without a newline counts as a line.
func tailOffset(f *os.File, n int) (int64, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	const chunk = 32 << 10
	buf := make([]byte, chunk)
	end := size
	// A trailing newline ends the last line; it does not start a new one.
	skip := true
	for end > 0 {
		start := max(end-chunk, 0)
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' {
				skip = false
				continue
			}
			if skip {
				skip = false
				continue
			}
			n--
			if n == 0 {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
