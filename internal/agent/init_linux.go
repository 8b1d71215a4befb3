package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/standbyhq/standby"
)

// Where things are inside an isolated instance.
const (
	sandboxDir  = "/sandbox"          // the instance's writable root
	sandboxSelf = "/.standby/standby" // the standby binary, read-only
	sockSuffix  = ".sock"             // <run dir>/<id>.sock on the host: the init's exec socket
	tmpDir      = ".tmp"              // under the root: the sandbox's /tmp
	rootfsDir   = "rootfs"            // in the run dir: where the spawner mounts the root skeleton (in its namespace only)
)

// The init's descriptors beyond stdio, in the order spawnInit passes them.
const (
	initConfigF = 3 + iota // config in (initConfig, JSON)
	initStatusF            // status out (parseInitStatus)
	initRootF              // the writable root's detached mount (prepareRoot)
	initSockF              // the exec socket, listening
)

// initConfig is what the agent hands the init on initConfigF.
type initConfig struct {
	Hostname string   `json:"hostname"`
	UID      int      `json:"uid"`
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Workdir  string   `json:"workdir"` // inside the sandbox
}

// initReply is the init's answer to an exec request.
type initReply struct {
	Result *standby.ExecResult `json:"result,omitempty"`
	Field  string              `json:"field,omitempty"`
	Error  string              `json:"error,omitempty"`
}

// InitCommand is the hidden command of the binary that must call
// SandboxInit: the agent starts isolated instances' inits as
// `<SelfExe> sandbox-init`.
const InitCommand = "sandbox-init"

// Builtin returns how to run one of the standby binary's own commands
// (a start_cmd "standby <args>") inside the calling process, or nil when
// args is not one that can run there. The func runs until ctx ends.
type Builtin func(args []string) func(ctx context.Context) error

// SandboxInit is the init (PID 1) of an isolated instance, run by the
// hidden `standby sandbox-init` command in fresh PID, mount, UTS and IPC
// namespaces, already in the instance's cgroup and in its root (a copy of
// the spawner's: a read-only view of the host's system directories). It
// adds the writable root at /sandbox and a fresh /proc, starts start_cmd as
// the instance's uid, serves exec requests on a unix socket, reaps orphans,
// passes SIGTERM on to every process, and exits with start_cmd's status
// (128+signal when it was killed), taking the whole namespace with it.
//
// A start_cmd that builtin runs (the built-in templates' processes) runs
// in the init itself, after it has become the instance's uid: the
// instance then costs one process start, not two.
func SandboxInit(builtin Builtin) int {
	cfgF := os.NewFile(initConfigF, "config")
	status := os.NewFile(initStatusF, "status")
	if cfgF == nil || status == nil {
		fmt.Fprintln(os.Stderr, "sandbox-init: run by the standby agent only")
		return 2
	}
	var cfg initConfig
	err := json.NewDecoder(cfgF).Decode(&cfg)
	cfgF.Close()
	fail := func(field string, err error) int { return initFailed(status, field, err) }
	if err != nil {
		return fail("", fmt.Errorf("read config: %w", err))
	}
	if os.Getpid() != 1 {
		return fail("", errors.New("not in a new PID namespace"))
	}
	sockF := os.NewFile(initSockF, "exec")
	l, err := net.FileListener(sockF)
	sockF.Close()
	if err != nil {
		return fail("", fmt.Errorf("exec socket: %w", err))
	}
	ln, ok := l.(*net.UnixListener)
	if !ok {
		return fail("", errors.New("exec socket: not a unix socket"))
	}
	if err := buildRoot(); err != nil {
		return fail("", fmt.Errorf("build root: %w", err))
	}
	_ = syscall.Sethostname([]byte(cfg.Hostname))
	// Nothing started from here may gain privileges (setuid binaries).
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail("", fmt.Errorf("no_new_privs: %w", err))
	}

	r := newReaper()
	if builtin != nil && cfg.Argv[0] == sandboxSelf {
		if run := builtin(cfg.Argv[1:]); run != nil {
			return runBuiltin(cfg, ln, status, r, run)
		}
	}
	pathEnv := defaultPath
	for _, kv := range cfg.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	exe, err := lookPath(cfg.Argv[0], pathEnv, cfg.Workdir)
	if err != nil {
		return fail("start_cmd", err)
	}
	cred := &syscall.Credential{Uid: uint32(cfg.UID), Gid: uint32(cfg.UID), Groups: []uint32{}}
	main, mainDone, err := r.spawn(exe, cfg.Argv, &syscall.ProcAttr{
		Dir:   cfg.Workdir,
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Credential: cred},
	})
	if err != nil {
		return fail("start_cmd", fmt.Errorf("cannot run %s: %v", cfg.Argv[0], err))
	}
	// Before "ok": a stop may follow at once.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	fmt.Fprintf(status, "ok\t%d\n", main)
	status.Close()
	go func() {
		for sig := range sigs {
			signalOthers(sig.(syscall.Signal))
		}
	}()
	go serveExec(ln, cred, r.spawn)

	// The init's exit kills every process left in the namespace.
	ws := <-mainDone
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// signalOthers sends sig to every process of the init's PID namespace but
// the init: those its own /proc lists. kill(-1) says the same in one call,
// but the kernel answers it by walking every process of the host, so each
// stop would cost O(instances).
func signalOthers(sig syscall.Signal) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		_ = syscall.Kill(-1, sig)
		return
	}
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != 1 {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// initFailed reports why the instance could not start on the status pipe
// and returns the init's exit code.
func initFailed(status *os.File, field string, err error) int {
	fmt.Fprintf(status, "error\t%s\t%v\n", field, err)
	status.Close()
	return 1
}

// runBuiltin is the rest of SandboxInit for a start_cmd that runs in the
// init: it becomes the instance's uid (no capabilities, not dumpable, so
// the sandbox's processes cannot trace it), takes start_cmd's env and
// working dir, reports itself (PID 1) as the main process and runs it.
// Exec requests run as the same uid; SIGTERM goes to every other process
// and ends run's context.
func runBuiltin(cfg initConfig, ln *net.UnixListener, status *os.File, r *reaper, run func(context.Context) error) int {
	fail := func(field string, err error) int { return initFailed(status, field, err) }
	os.Clearenv()
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return fail("env", err)
		}
	}
	if err := dropPrivileges(cfg.UID); err != nil {
		return fail("", err)
	}
	if err := os.Chdir(cfg.Workdir); err != nil {
		return fail("workdir", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Before "ok": a stop may follow at once.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	fmt.Fprintf(status, "ok\t%d\n", os.Getpid())
	status.Close()
	go func() {
		for sig := range sigs {
			signalOthers(sig.(syscall.Signal))
			cancel()
		}
	}()
	go serveExec(ln, nil, r.spawn)
	err := run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// dropPrivileges makes every thread of the process uid (and gid uid, no
// supplementary groups), which clears its capabilities, and makes it not
// dumpable. The agent starts the init with gid uid and no supplementary
// groups already (set in the child before exec, where it is cheap): each
// of these calls stops every thread of the Go runtime, which under a
// loaded CPU costs more than the rest of the init's own work.
func dropPrivileges(uid int) error {
	if groups, err := syscall.Getgroups(); err != nil || len(groups) > 0 {
		if err := syscall.Setgroups([]int{}); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
	}
	if syscall.Getgid() != uid || syscall.Getegid() != uid {
		if err := syscall.Setgid(uid); err != nil {
			return fmt.Errorf("setgid: %w", err)
		}
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("not dumpable: %w", err)
	}
	return nil
}

// reaper waits for every child of the init (orphans are re-parented to
// it) and hands the status of the ones it started to their waiter.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
}

func newReaper() *reaper {
	r := &reaper{waiters: map[int]chan syscall.WaitStatus{}}
	sigchld := make(chan os.Signal, 16)
	signal.Notify(sigchld, syscall.SIGCHLD)
	go func() {
		for range sigchld {
			r.reap()
		}
	}()
	return r
}

func (r *reaper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		ch := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// spawn starts a process and registers its waiter under the lock the
// reaper takes, so its exit can never be reaped before it is registered.
func (r *reaper) spawn(exe string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(exe, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

// serveExec answers exec requests: one JSON execJob per connection, one
// initReply back. A connection closed early kills the exec.
func serveExec(ln *net.UnixListener, cred *syscall.Credential, spawn spawnFunc) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			var job execJob
			if err := json.NewDecoder(br).Decode(&job); err != nil || len(job.Argv) == 0 {
				_ = json.NewEncoder(c).Encode(initReply{Error: "malformed exec request"})
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				// The agent sends nothing more: EOF or an error means it
				// gave up on this exec.
				var b [1]byte
				_, _ = c.Read(b[:])
				cancel()
			}()
			res, err := runExec(ctx, job, cred, spawn)
			var reply initReply
			if err != nil {
				var se *standby.Error
				if errors.As(err, &se) {
					reply.Field, reply.Error = se.Field, se.Message
				} else {
					reply.Error = err.Error()
				}
			} else {
				reply.Result = &res
			}
			_ = json.NewEncoder(c).Encode(reply)
		}()
	}
}

// systemDirs are the host directories an isolated instance sees,
// read-only, nosuid and nodev (a symlink is copied as a symlink).
var systemDirs = []string{"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"}

// Mount points the init fills in its own namespace; the skeleton holds
// them empty.
const (
	procDir = "/proc"
	shmDir  = ".shm" // under the root: the sandbox's /dev/shm
)

// mountSkeleton mounts, at dir, the root every isolated instance starts
// from: a read-only tmpfs holding the host's system directories, the
// harmless devices, the standby binary (all read-only, nosuid, nodev) and
// empty mount points for what is each instance's own (/proc, /sandbox,
// /tmp, /dev/shm). The spawner builds it once, in its own mount namespace,
// and pivots into it; every init's new mount namespace holds a copy of it,
// which the init completes with four mounts (buildRoot). It is private, so
// nothing mounted on an init's copy reaches another namespace.
func mountSkeleton(dir, selfExe string) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mount root skeleton: %w", err)
	}
	defer func() {
		if err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	}()
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make root skeleton private: %w", err)
	}
	for _, d := range systemDirs {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(d)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dir+d); err != nil {
				return err
			}
		case fi.IsDir():
			if err := bind(d, dir+d, true); err != nil {
				return err
			}
		}
	}
	if err := os.Mkdir(dir+"/dev", 0o755); err != nil {
		return err
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := os.WriteFile(dir+"/dev/"+d, nil, 0o666); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+d, dir+"/dev/"+d, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, dir+"/dev/"+name); err != nil {
			return err
		}
	}
	for _, d := range []string{"/dev/shm", procDir, sandboxDir, "/tmp", filepath.Dir(sandboxSelf)} {
		if err := os.Mkdir(dir+d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(dir+sandboxSelf, nil, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(selfExe, dir+sandboxSelf, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind standby binary: %w", err)
	}
	if err := unix.Mount("", dir+sandboxSelf, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make standby binary read-only: %w", err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("make root skeleton read-only: %w", err)
	}
	if err := unix.Mount("", dir, "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make root skeleton private: %w", err)
	}
	return nil
}

// buildRoot completes the init's root: it starts in a copy of the
// spawner's namespace, so its root is already the skeleton and nothing of
// the host is mounted in it (see spawner). It adds a fresh /proc, the
// instance's writable root at /sandbox and, from it, /tmp and /dev/shm.
func buildRoot() error {
	if err := unix.Mount("proc", procDir, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.MoveMount(initRootF, "", unix.AT_FDCWD, sandboxDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach /sandbox: %w", err)
	}
	unix.Close(initRootF)
	// The root's tmpfs is nosuid and nodev: its binds are too.
	for _, b := range []struct{ src, dst string }{
		{sandboxDir + "/" + tmpDir, "/tmp"},
		{sandboxDir + "/" + shmDir, "/dev/shm"},
	} {
		if err := unix.Mount(b.src, b.dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", b.dst, err)
		}
	}
	return nil
}

// bind mounts src at dst (created), nosuid and nodev, read-only when ro.
func bind(src, dst string, ro bool) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV)
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s: %w", dst, err)
	}
	return nil
}

// parseInitStatus reads the init's status line: "ok\t<pid>" or
// "error\t<field>\t<message>".
func parseInitStatus(line string) (int, error) {
	kind, rest, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
	switch kind {
	case "ok":
		pid, err := strconv.Atoi(rest)
		if err != nil {
			return 0, fmt.Errorf("bad init status %q", line)
		}
		return pid, nil
	case "error":
		field, msg, _ := strings.Cut(rest, "\t")
		if field != "" {
			return 0, standby.FieldError(field, "%s", msg)
		}
		return 0, errors.New(msg)
	case "":
		return 0, errors.New("init exited before starting the instance")
	}
	return 0, fmt.Errorf("bad init status %q", line)
}
