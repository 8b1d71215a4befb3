package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/standbyhq/standby"
)

// relPath checks a user's path: relative, not leaving the root. Symlinks
// are refused later by os.Root when they point outside.
func relPath(field, p string) (string, error) {
	if err := standby.ValidateRelPath(p); err != nil {
		return "", standby.FieldError(field, "%v", err)
	}
	c := path.Clean(p)
	if c == "." {
		return "", standby.FieldError(field, "must name a file")
	}
	return filepath.FromSlash(c), nil
}

// fileError turns an os.Root error into what the user sees: not_found for
// a missing file, else validation_failed on field (escapes, not a
// directory, no space) with no host path in the message.
func fileError(field, p string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return standby.Errorf(standby.ENotFound, "%s %q not found", field, p)
	}
	return standby.FieldError(field, "%s: %v", p, unwrapPath(err))
}

// WriteFile writes r to path inside the instance's root, creating parent
// directories; with isolation the file belongs to the instance's uid and
// counts against its disk_mb.
func (a *Local) WriteFile(ctx context.Context, id, p string, r io.Reader) error {
	rel, err := relPath("path", p)
	if err != nil {
		return err
	}
	inst := a.runningInst(id)
	if inst == nil {
		return standby.Errorf(standby.ENotFound, "instance %s is not running", id)
	}
	return inst.useRoot(func(dir string) error { return writeIn(dir, inst.iso, rel, p, r) })
}

// writeIn writes r to rel under dir, for WriteFile.
func writeIn(dir string, iso *isolation, rel, p string, r io.Reader) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	uid := -1
	if iso != nil {
		uid = iso.UID
	}
	if d := filepath.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fileError("path", p, err)
		}
		if uid >= 0 {
			for dir := d; dir != "."; dir = filepath.Dir(dir) {
				_ = root.Lchown(dir, uid, uid)
			}
		}
	}
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fileError("path", p, err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fileError("path", p, err)
		}
		return err
	}
	if uid >= 0 {
		_ = root.Lchown(rel, uid, uid)
	}
	return nil
}

// ReadFile copies the file at path inside the instance's root to w.
func (a *Local) ReadFile(ctx context.Context, id, p string, w io.Writer) error {
	rel, err := relPath("path", p)
	if err != nil {
		return err
	}
	inst := a.runningInst(id)
	if inst == nil {
		return standby.Errorf(standby.ENotFound, "instance %s is not running", id)
	}
	return inst.useRoot(func(root string) error { return copyIn(root, rel, "path", p, w) })
}

// copyIn copies the regular file rel under dir to w, never leaving dir.
func copyIn(dir, rel, field, p string, w io.Writer) error {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return standby.Errorf(standby.ENotFound, "%s %q not found", field, p)
	}
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := root.Open(rel)
	if err != nil {
		return fileError(field, p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return standby.FieldError(field, "%s is not a regular file", p)
	}
	_, err = io.Copy(w, f)
	return err
}

// useArtefacts calls fn with the dir of the instance's artefacts: its
// root's while it runs, the copy kept once it ended.
func (a *Local) useArtefacts(id string, fn func(dir string) error) error {
	if validID(id) != nil {
		return standby.Errorf(standby.ENotFound, "instance %s not found", id)
	}
	if inst := a.runningInst(id); inst != nil {
		err := inst.useRoot(func(root string) error { return fn(filepath.Join(root, "artefacts")) })
		if err == nil || !inst.rootReleased() {
			return err
		}
		// It ended meanwhile, and its artefacts were kept first.
	}
	inst := a.paths(id)
	if _, err := os.Stat(inst.logPath("stdout")); err != nil {
		return standby.Errorf(standby.ENotFound, "instance %s not found", id)
	}
	return fn(inst.keptArtefacts())
}

// Artefacts lists the files under the instance's artefacts dir by path.
// The page token is the last path of the previous page.
func (a *Local) Artefacts(ctx context.Context, id string, page standby.Page) ([]standby.Artefact, string, error) {
	after := ""
	if page.Token != "" {
		b, err := base64.RawURLEncoding.DecodeString(page.Token)
		if err != nil {
			return nil, "", standby.FieldError("page_token", "is not a token this API returned")
		}
		after = string(b)
	}
	size := page.Size
	if size <= 0 {
		size = standby.DefaultPageSize
	}
	size = min(size, standby.MaxPageSize)
	var all []standby.Artefact
	err := a.useArtefacts(id, func(dir string) (err error) {
		all, err = listFiles(dir)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	i := sort.Search(len(all), func(i int) bool { return all[i].Path > after })
	items := all[i:]
	next := ""
	if len(items) > size {
		items = items[:size]
		next = base64.RawURLEncoding.EncodeToString([]byte(items[size-1].Path))
	}
	return items, next, nil
}

// listFiles lists the regular files under dir, sorted by path, through an
// os.Root so a symlink the instance planted cannot lead the agent outside.
func listFiles(dir string) ([]standby.Artefact, error) {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []standby.Artefact{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer root.Close()
	out := []standby.Artefact{}
	var walk func(rel string) error
	walk = func(rel string) error {
		d, err := root.Open(rel)
		if err != nil {
			return nil // gone or replaced meanwhile
		}
		entries, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return nil
		}
		for _, e := range entries {
			p := filepath.Join(rel, e.Name())
			fi, err := root.Lstat(p)
			if err != nil {
				continue
			}
			switch {
			case fi.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			case fi.Mode().IsRegular():
				out = append(out, standby.Artefact{Path: filepath.ToSlash(p), Size: fi.Size(), ModifiedAt: fi.ModTime().UTC().Truncate(time.Microsecond)})
			}
		}
		return nil
	}
	if err := walk("."); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// ArtefactContent copies one artefact to w.
func (a *Local) ArtefactContent(ctx context.Context, id, p string, w io.Writer) error {
	rel, err := relPath("file_path", p)
	if err != nil {
		return err
	}
	return a.useArtefacts(id, func(dir string) error { return copyIn(dir, rel, "file_path", p, w) })
}

// saveArtefacts copies the regular files under src to dst: an ended
// instance's root goes away.
func saveArtefacts(src, dst string) error {
	files, err := listFiles(src)
	if err != nil || len(files) == 0 {
		return err
	}
	root, err := os.OpenRoot(src)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range files {
		rel := filepath.FromSlash(f.Path)
		target := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		in, err := root.Open(rel)
		if err != nil {
			continue
		}
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err == nil {
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		in.Close()
		if err != nil {
			return err
		}
		_ = os.Chtimes(target, f.ModifiedAt, f.ModifiedAt)
	}
	return nil
}

// sweepPoll is how often what ended instances left is looked at.
const sweepPoll = 10 * time.Minute

// sweep deletes the logs and kept artefacts of instances that ended more
// than ArtefactRetention ago, now and every sweepPoll until ctx ends.
func (a *Local) sweep(ctx context.Context) {
	t := time.NewTicker(sweepPoll)
	defer t.Stop()
	for {
		a.sweepOnce()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepOnce deletes what ended instances left once ArtefactRetention has
// passed since they ended (the mtime teardown gave their stdout log).
func (a *Local) sweepOnce() {
	entries, _ := os.ReadDir(a.instDir)
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".stdout.log")
		if !ok || e.IsDir() || validID(id) != nil {
			continue
		}
		inst := a.paths(id)
		fi, err := e.Info()
		if err != nil || a.clock.Now().Sub(fi.ModTime()) < a.cfg.ArtefactRetention {
			continue
		}
		if _, err := os.Stat(inst.statePath()); err == nil {
			continue // still running (or started again under the same id)
		}
		err = os.RemoveAll(inst.keptArtefacts())
		for _, p := range []string{inst.logPath("stderr"), inst.logPath("stdout")} {
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		if err != nil {
			a.log.Error("cannot delete an ended instance's logs and artefacts", "instance", id, "err", err)
		} else {
			a.log.Info("deleted ended instance's artefacts and logs", "instance", id)
		}
	}
}
