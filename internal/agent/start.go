package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/standbyhq/standby"
)

// instance is one process group the agent runs. Fields without a comment
// are set before the instance becomes visible and never change.
type instance struct {
	id string
	// logDir and run are the agent's dirs (shared strings, not copies):
	// see logPath, keptArtefacts, root, statePath.
	logDir    string
	run       string
	spec      standby.InstanceSpec
	pid       int
	startTick uint64 // /proc/<pid>/stat start time: tells pid reuse apart
	startedAt time.Time
	address   string
	ports     map[string]int
	readiness standby.HealthCheck
	liveness  standby.HealthCheck
	env       []string   // the start_cmd's env, also the base of an exec's
	iso       *isolation // nil: isolation none

	// rootMu guards rootFD: the root's path is used under RLock, and the
	// root is released under Lock, so no use outlives it (the path names
	// a descriptor number, which a later instance may reuse).
	rootMu sync.RWMutex
	// rootFD holds an isolated instance's root mount (see prepareRoot);
	// -1 when it has none or it was released.
	rootFD int

	// exited is closed once the main process is gone (and reaped when it
	// is the agent's child); exitMsg says how, written before the close.
	exited  chan struct{}
	exitMsg string

	// ctx ends when the instance is stopped or has ended, or at shutdown:
	// it bounds the instance's probes and event sends.
	ctx    context.Context
	cancel context.CancelFunc

	// Guarded by Local.mu.
	ready    bool
	stopping bool // StopInstance was called: no more events
	// unwatched: the monitor has returned after readiness (a process
	// liveness check has nothing to probe), so the exit is the waiter's
	// to act on.
	unwatched bool
	ended     bool          // removed from the running set
	endCh     chan struct{} // closed once it ended and was torn down (finish)

	// statMu guards the previous CPU reading, for Stats' rate.
	statMu  sync.Mutex
	lastCPU uint64
	lastAt  time.Time

	// fileMu orders writes and the removal of the state file, so a late write
	// cannot resurrect the file of a stopped instance.
	fileMu sync.Mutex
}

func (a *Local) newInstance(id string) *instance {
	ctx, cancel := context.WithCancel(a.base)
	return &instance{
		id: id, logDir: a.instDir, run: a.runDir,
		exited: make(chan struct{}),
		endCh:  make(chan struct{}),
		ctx:    ctx,
		cancel: cancel,
		rootFD: -1,
	}
}

func (inst *instance) infoLocked() standby.InstanceInfo {
	ports := make(map[string]int, len(inst.ports))
	for k, v := range inst.ports {
		ports[k] = v
	}
	return standby.InstanceInfo{ID: inst.id, Address: inst.address, Ports: ports, PID: inst.pid, Ready: inst.ready}
}

// An instance's files, computed when needed rather than kept in every
// ready instance's record. In the instances dir, only what outlives it:
// <id>.stdout.log, <id>.stderr.log and, once it ended with artefacts,
// <id>.artefacts/. Everything else is in the run dir, a tmpfs when
// isolated: on ext4 without a journal, every new inode scans past the
// ones deleted in the last minutes, which made an instance dir and its
// files the largest cost of a start on this project's machines.

// paths returns an instance value that only knows where id's files are.
func (a *Local) paths(id string) *instance {
	return &instance{id: id, logDir: a.instDir, run: a.runDir}
}

// root is the host path of a plain (isolation none) instance's root:
// <run>/<id>. An isolated instance's root is reached with useRoot.
func (inst *instance) root() string { return filepath.Join(inst.run, inst.id) }

// useRoot calls fn with a host path of the instance's root, valid while
// fn runs: for an isolated instance the path of the descriptor of its root
// mount, which exists in no mount namespace of the host (see prepareRoot).
// not_found once the root was released.
func (inst *instance) useRoot(fn func(root string) error) error {
	if inst.iso == nil {
		return fn(inst.root())
	}
	inst.rootMu.RLock()
	defer inst.rootMu.RUnlock()
	if inst.rootFD < 0 {
		return standby.Errorf(standby.ENotFound, "instance %s is not running", inst.id)
	}
	return fn(fdPath(inst.rootFD))
}

// rootReleased reports whether an isolated instance's root was released.
func (inst *instance) rootReleased() bool {
	if inst.iso == nil {
		return false
	}
	inst.rootMu.RLock()
	defer inst.rootMu.RUnlock()
	return inst.rootFD < 0
}

// fdPath is the path of a descriptor of this process.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

func (inst *instance) logPath(stream string) string {
	return filepath.Join(inst.logDir, inst.id+"."+stream+".log")
}

// keptArtefacts is where an ended instance's artefacts are kept.
func (inst *instance) keptArtefacts() string {
	return filepath.Join(inst.logDir, inst.id+".artefacts")
}

func (inst *instance) statePath() string { return filepath.Join(inst.run, inst.id+stateSuffix) }

// sockPath is where its init serves exec (isolated).
func (inst *instance) sockPath() string { return filepath.Join(inst.run, inst.id+sockSuffix) }

// defaultPath is the PATH of an instance when the agent has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// StartInstance writes the instance's files, starts its process in its own
// process group and returns where it listens. Readiness and death come as
// events. validation_failed: the spec cannot run (bad paths, no such
// executable); conflict: the id is already running; unavailable: the host
// is full, shutting down, or could not start it.
func (a *Local) StartInstance(ctx context.Context, spec standby.InstanceSpec) (standby.InstanceInfo, error) {
	if err := validateSpec(spec); err != nil {
		return standby.InstanceInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return standby.InstanceInfo{}, err
	}
	id := spec.ID
	if err := a.reserve(id); err != nil {
		return standby.InstanceInfo{}, err
	}
	inst, err := a.start(spec)
	if err != nil {
		a.mu.Lock()
		a.unpendLocked(id)
		a.mu.Unlock()
		return standby.InstanceInfo{}, err
	}
	a.mu.Lock()
	info := inst.infoLocked()
	a.mu.Unlock()
	a.log.Info("instance started", "instance", id, "pid", inst.pid, "ports", inst.ports)
	return info, nil
}

func validateSpec(spec standby.InstanceSpec) error {
	var errs standby.Errors
	if err := validID(spec.ID); err != nil {
		errs.Add("id", "%v", err)
	}
	if spec.Build == nil {
		errs.Add("build", "is required")
		return errs.Err()
	}
	b := spec.Build
	if len(b.StartCmd) == 0 || b.StartCmd[0] == "" {
		errs.Add("start_cmd", "is required: a non-empty argv array")
	}
	if b.Workdir != "" {
		if err := standby.ValidateRelPath(b.Workdir); err != nil {
			errs.Add("workdir", "%v", err)
		}
	}
	for _, p := range standby.SortedKeys(b.Files) {
		if err := standby.ValidateRelPath(p); err != nil {
			errs.Add("files."+p, "%v", err)
		}
	}
	standby.ValidateEnv("env", b.Env, &errs)
	standby.ValidateEnv("env", spec.Env, &errs)
	return errs.Err()
}

// validID accepts ids that are one plain path element.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") || len(id) > 200 {
		return fmt.Errorf("must be a plain name")
	}
	return nil
}

// reserve claims a slot and the id for a start in progress.
func (a *Local) reserve(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return standby.Errorf(standby.EUnavailable, "agent is shutting down")
	case a.running[id] != nil || a.pending[id] != nil:
		return standby.Errorf(standby.EConflict, "instance %s is already running", id)
	case len(a.running)+len(a.pending) >= a.cfg.MaxInstances:
		return standby.Errorf(standby.EUnavailable, "host %s runs its maximum of %d instances", a.cfg.HostID, a.cfg.MaxInstances)
	}
	a.pending[id] = make(chan struct{})
	return nil
}

// start does the work of StartInstance; on error nothing keeps running.
func (a *Local) start(spec standby.InstanceSpec) (inst *instance, err error) {
	b := spec.Build
	isolated := a.isolation != standby.IsolationNone
	paths := a.paths(spec.ID)
	root := paths.root()
	defer func() {
		if err != nil {
			// Nothing runs: nothing of it is worth keeping.
			os.Remove(paths.logPath("stdout"))
			os.Remove(paths.logPath("stderr"))
			os.Remove(paths.sockPath())
			if !isolated {
				os.RemoveAll(root)
			}
		}
	}()
	// With isolation the instance sees its root at /sandbox, as its own
	// uid, on a tmpfs of disk_mb that the agent reaches by descriptor.
	var iso *isolation
	rootFD := -1
	inside := root
	if isolated {
		if iso, rootFD, err = a.prepareRoot(spec); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				a.releaseRoot(iso, rootFD)
			}
		}()
		root, inside = fdPath(rootFD), sandboxDir
	} else if err := os.Mkdir(root, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("start instance %s: %w", spec.ID, err)
	}
	if err := writeFiles(root, b.Files); err != nil {
		return nil, err
	}
	workdir := root
	if b.Workdir != "" {
		if err := mkdirIn(root, b.Workdir); err != nil {
			return nil, standby.FieldError("workdir", "%v", err)
		}
		workdir = filepath.Join(root, filepath.FromSlash(b.Workdir))
	}
	dirs := []string{"artefacts"}
	if iso != nil {
		dirs = append(dirs, tmpDir, shmDir)
	}
	if err := mkdirIn(root, dirs...); err != nil {
		return nil, fmt.Errorf("start instance %s: make %v: %w", spec.ID, dirs, err)
	}
	if iso != nil {
		if err := chownTree(root, iso.UID); err != nil {
			return nil, fmt.Errorf("start instance %s: %w", spec.ID, err)
		}
	}

	ports, err := a.allocPorts(b.Ports)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.freePorts(ports)
		}
	}()

	env := map[string]string{"PATH": os.Getenv("PATH")}
	if env["PATH"] == "" || iso != nil {
		env["PATH"] = defaultPath
	}
	for k, v := range b.Env {
		env[k] = v
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	for i, p := range b.Ports {
		if i == 0 {
			env["PORT"] = strconv.Itoa(ports[p.Name])
		}
		env["PORT_"+strings.ToUpper(p.Name)] = strconv.Itoa(ports[p.Name])
	}
	env["STANDBY_INSTANCE_ID"] = spec.ID
	env["STANDBY_ARTEFACTS_DIR"] = filepath.Join(inside, "artefacts")
	env["STANDBY_ADDRESS"] = a.cfg.Address
	env["HOME"] = inside

	argv := make([]string, len(b.StartCmd))
	for i, arg := range b.StartCmd {
		argv[i] = expand(arg, env)
	}
	envList := make([]string, 0, len(env))
	for _, k := range standby.SortedKeys(env) {
		envList = append(envList, k+"="+env[k])
	}

	stdout, err := a.stock.open(paths.logPath("stdout"))
	if err != nil {
		return nil, fmt.Errorf("start instance %s: %w", spec.ID, err)
	}
	defer stdout.Close()
	stderr, err := a.stock.open(paths.logPath("stderr"))
	if err != nil {
		return nil, fmt.Errorf("start instance %s: %w", spec.ID, err)
	}
	defer stderr.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("start instance %s: %w", spec.ID, err)
	}
	defer devnull.Close()
	stdio := []*os.File{devnull, stdout, stderr}

	var pid, pidfd int
	if iso != nil {
		if b.StartCmd[0] == standby.SelfCommand {
			argv[0] = sandboxSelf
		}
		inWork := inside
		if b.Workdir != "" {
			inWork = filepath.Join(inside, filepath.FromSlash(b.Workdir))
		}
		pid, pidfd, err = a.spawnInit(spec, iso, rootFD, argv, envList, inWork, stdio)
		if err != nil {
			return nil, err
		}
		iso.cg = nil // from now on it is loaded from its path when needed
	} else {
		exe := argv[0]
		if b.StartCmd[0] == standby.SelfCommand {
			exe = a.cfg.SelfExe
		} else if exe, err = lookPath(exe, env["PATH"], workdir); err != nil {
			return nil, standby.FieldError("start_cmd", "%v", err)
		}
		pidfd = -1
		proc, err := os.StartProcess(exe, argv, &os.ProcAttr{
			Dir:   workdir,
			Env:   envList,
			Files: stdio,
			Sys:   &syscall.SysProcAttr{Setpgid: true, PidFD: &pidfd},
		})
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
				return nil, standby.FieldError("start_cmd", "cannot run %s: %v", argv[0], errors.Unwrap(err))
			}
			return nil, standby.Errorf(standby.EUnavailable, "start instance %s: %v", spec.ID, err)
		}
		pid = proc.Pid
		// The agent waits for the process itself (waitid and a pidfd), so
		// the os.Process handle is not needed.
		_ = proc.Release()
	}

	inst = a.newInstance(spec.ID)
	inst.spec = spec
	inst.pid = pid
	inst.env = envList
	inst.iso = iso
	inst.rootFD = rootFD
	// Wall time, not the injected clock: it sets the readiness deadline,
	// also after a restart.
	inst.startedAt = time.Now()
	inst.address = a.cfg.Address
	inst.ports = ports
	inst.readiness = b.Readiness()
	inst.liveness = b.Liveness()
	st, err := readStat(pid)
	if err == nil {
		inst.startTick = st.startTime
	}
	if err == nil {
		err = inst.writeState(false)
	}
	if err != nil {
		inst.cancel()
		killGroup(pid, syscall.SIGKILL)
		waitReap(pid)
		if pidfd >= 0 {
			syscall.Close(pidfd)
		}
		return nil, standby.Errorf(standby.EUnavailable, "start instance %s: %v", spec.ID, err)
	}
	if !a.launch(inst, func() { a.waitChild(inst, pidfd) }) {
		// Shutdown raced this start: leave nothing behind.
		inst.cancel()
		killGroup(pid, syscall.SIGKILL)
		waitReap(pid)
		if pidfd >= 0 {
			syscall.Close(pidfd)
		}
		inst.removeState()
		return nil, standby.Errorf(standby.EUnavailable, "agent is shutting down")
	}
	return inst, nil
}

// expand replaces $NAME and ${NAME} in s by the instance's env. Unlike
// os.Expand it leaves references to names the env lacks ($1, $$, ${X:-y},
// $UNSET) as they are, so a `sh -c` script keeps its own variables; for
// names the env has, the agent's value is what the shell would see anyway.
func expand(s string, env map[string]string) string {
	var out strings.Builder
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			out.WriteString(s[i:])
			break
		}
		out.WriteString(s[i : i+j])
		i += j
		name, width := refName(s[i+1:])
		if v, ok := env[name]; ok && name != "" {
			out.WriteString(v)
			i += 1 + width
			continue
		}
		out.WriteByte('$')
		i++
	}
	return out.String()
}

// refName parses the name after a '$': NAME or {NAME}. width is how many
// bytes the reference spans after the '$'.
func refName(s string) (name string, width int) {
	if strings.HasPrefix(s, "{") {
		end := strings.IndexByte(s, '}')
		if end < 0 || !isName(s[1:end]) {
			return "", 0
		}
		return s[1:end], end + 1
	}
	n := 0
	for n < len(s) && (s[n] == '_' || 'a' <= s[n]|0x20 && s[n]|0x20 <= 'z' || n > 0 && '0' <= s[n] && s[n] <= '9') {
		n++
	}
	return s[:n], n
}

func isName(s string) bool {
	name, n := refName(s)
	return name != "" && n == len(s)
}

// writeFiles writes the build's files under root, 0644, creating
// directories. os.Root refuses any path that leaves root, through ".." or
// through a symlink.
func writeFiles(root string, files map[string]string) error {
	if len(files) == 0 {
		return nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("open instance root: %w", err)
	}
	defer r.Close()
	var errs standby.Errors
	for _, p := range standby.SortedKeys(files) {
		rel := filepath.FromSlash(filepath.Clean(p))
		if d := filepath.Dir(rel); d != "." {
			if err := r.MkdirAll(d, 0o755); err != nil {
				errs.Add("files."+p, "cannot create directory: %v", unwrapPath(err))
				continue
			}
		}
		if err := r.WriteFile(rel, []byte(files[p]), 0o644); err != nil {
			errs.Add("files."+p, "cannot write: %v", unwrapPath(err))
		}
	}
	return errs.Err()
}

// mkdirIn creates each of rels (and its parents) inside root without
// leaving it.
func mkdirIn(root string, rels ...string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, rel := range rels {
		if err := r.MkdirAll(filepath.FromSlash(filepath.Clean(rel)), 0o755); err != nil {
			return unwrapPath(err)
		}
	}
	return nil
}

// unwrapPath drops the absolute host path from a *PathError so messages
// users see name only their own path.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// lookPath finds name like a shell would with the instance's PATH; a name
// with a slash is taken relative to the working directory.
func lookPath(name, path, workdir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(workdir, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("cannot run %s: %v", name, err)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(workdir, dir)
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in PATH", name)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return unwrapPath(err)
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return errors.New("permission denied")
	}
	return nil
}

// allocPorts picks a free TCP port on the advertised address for each
// port. The listeners stay open until all are picked, and ports already
// given to other instances (which may not be bound yet) are skipped.
func (a *Local) allocPorts(ports []standby.Port) (map[string]int, error) {
	out := make(map[string]int, len(ports))
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range ports {
		for tries := 0; ; tries++ {
			if tries == 50 {
				a.freePortsLocked(out)
				return nil, standby.Errorf(standby.EUnavailable, "no free port on %s", a.cfg.Address)
			}
			l, err := net.Listen("tcp", net.JoinHostPort(a.cfg.Address, "0"))
			if err != nil {
				a.freePortsLocked(out)
				return nil, standby.Errorf(standby.EUnavailable, "allocate port on %s: %v", a.cfg.Address, err)
			}
			held = append(held, l)
			port := l.Addr().(*net.TCPAddr).Port
			if a.ports[port] {
				continue
			}
			a.ports[port] = true
			out[p.Name] = port
			break
		}
	}
	return out, nil
}

func (a *Local) freePorts(ports map[string]int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.freePortsLocked(ports)
}

func (a *Local) freePortsLocked(ports map[string]int) {
	for _, p := range ports {
		delete(a.ports, p)
	}
}
