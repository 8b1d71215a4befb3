package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/standbyhq/standby"
)

// Isolation settings (Config.Isolation).
const (
	IsolationAuto = "auto" // on when running as root with cgroups, else none
	IsolationOn   = "on"   // required: New fails when it cannot be had
	IsolationNone = standby.IsolationNone
)

// isolation is what an isolated instance holds besides its process: its
// uid, its cgroup, and (in its state file) how to find them again.
type isolation struct {
	UID        int    `json:"uid"`
	CgroupKind string `json:"cgroup_kind"`
	Cgroup     string `json:"cgroup"`
	// cg is the cgroup handle while the instance starts; a running
	// instance keeps only the path (see cgroup).
	cg *cgroup
}

// cgroup returns the instance's cgroup: the handle made at start while the
// start runs, else one loaded from its path. Running instances hold only
// the path, since a handle costs about 1.5 KB per ready instance.
func (iso *isolation) cgroup() (*cgroup, error) {
	if iso.cg != nil {
		return iso.cg, nil
	}
	return loadCgroup(iso.CgroupKind, iso.Cgroup)
}

// resolveIsolation decides the isolation in force: the Host.Isolation
// value, and the cgroup hierarchy when on.
func resolveIsolation(setting string) (string, string, error) {
	switch setting {
	case "", IsolationAuto, IsolationOn:
	case IsolationNone:
		return standby.IsolationNone, "", nil
	default:
		return "", "", fmt.Errorf("agent: Isolation must be auto, on or none, not %q", setting)
	}
	kind, err := cgroupHierarchy()
	if err == nil && os.Geteuid() != 0 {
		err = errors.New("not running as root")
	}
	if err != nil {
		if setting == IsolationOn {
			return "", "", fmt.Errorf("agent: isolation needs root and cgroups: %w", err)
		}
		return standby.IsolationNone, "", nil
	}
	return standby.IsolationNamespaces + "+" + kind, kind, nil
}

// cgroupScope names this agent's cgroups after its data dir, so two
// agents on one machine (tests, several data dirs) never share one.
func cgroupScope(dataDir string) string {
	h := fnv.New32a()
	h.Write([]byte(dataDir))
	return fmt.Sprintf("/standby/%08x", h.Sum32())
}

// allocUID gives the instance the lowest free uid of the agent's range.
func (a *Local) allocUID(id string) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for n := 0; n < a.cfg.MaxInstances*2; n++ {
		uid := a.cfg.UIDBase + n
		if _, used := a.uids[uid]; !used {
			a.uids[uid] = id
			return uid, nil
		}
	}
	return 0, standby.Errorf(standby.EUnavailable, "no free uid for instance %s", id)
}

func (a *Local) freeUID(uid int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.uids, uid)
}

// prepareRoot gives the instance a uid, makes its writable root (a tmpfs
// of disk_mb owned by the uid) and creates its cgroup. The root is a
// detached mount, attached in no mount namespace of the host: the agent
// holds it by the returned descriptor, and the init moves it into its own
// namespace. So the host's mount table does not grow with the instances,
// and neither does the copy of it that every init's new namespace makes
// (and tears down again), under the kernel's global namespace lock.
func (a *Local) prepareRoot(spec standby.InstanceSpec) (iso *isolation, rootFD int, err error) {
	res := spec.Resources.WithDefaults()
	uid, err := a.allocUID(spec.ID)
	if err != nil {
		return nil, -1, err
	}
	iso = &isolation{UID: uid, CgroupKind: a.cgKind, Cgroup: a.cgScope + "/" + spec.ID}
	defer func() {
		if err != nil {
			a.freeUID(uid)
		}
	}()
	rootFD, err = mountTmpfs(res.DiskMB, uid)
	if err != nil {
		return nil, -1, standby.Errorf(standby.EUnavailable, "start instance %s: mount root: %v", spec.ID, err)
	}
	iso.cg, err = newCgroup(a.cgKind, iso.Cgroup, res, a.cfg.PidsLimit)
	if err != nil {
		unix.Close(rootFD)
		return nil, -1, standby.Errorf(standby.EUnavailable, "start instance %s: %v", spec.ID, err)
	}
	return iso, rootFD, nil
}

// mountTmpfs makes a detached tmpfs of sizeMB, its root 0700 and owned by
// uid, nosuid and nodev, and returns its mount descriptor.
func mountTmpfs(sizeMB, uid int) (int, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fsfd)
	for _, o := range [][2]string{{"size", strconv.Itoa(sizeMB) + "m"}, {"mode", "0700"}, {"uid", strconv.Itoa(uid)}, {"gid", strconv.Itoa(uid)}} {
		if err := unix.FsconfigSetString(fsfd, o[0], o[1]); err != nil {
			return -1, fmt.Errorf("tmpfs %s=%s: %w", o[0], o[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("create tmpfs: %w", err)
	}
	fd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("fsmount: %w", err)
	}
	return fd, nil
}

// releaseRoot undoes prepareRoot for an instance whose processes are gone:
// closing the last reference to the root frees its tmpfs.
func (a *Local) releaseRoot(iso *isolation, rootFD int) {
	if cg, err := iso.cgroup(); err == nil {
		if err := cg.destroy(); err != nil {
			a.log.Error("cannot remove instance cgroup", "cgroup", iso.Cgroup, "err", err)
		}
	}
	if rootFD >= 0 {
		unix.Close(rootFD)
	}
	a.freeUID(iso.UID)
}

// chownTree gives everything under root (not following symlinks) to uid.
func chownTree(root string, uid int) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	return fs.WalkDir(r.FS(), ".", func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return r.Lchown(p, uid, uid)
	})
}

// spawnInit starts the instance's init in new PID, mount, UTS and IPC
// namespaces, puts it in the cgroup before it does anything, hands it its
// config and waits for it to report start_cmd started (or why not). It
// returns the init's pid, which stands for the instance from then on.
func (a *Local) spawnInit(spec standby.InstanceSpec, iso *isolation, rootFD int, argv, env []string, workdir string, stdio []*os.File) (pid, pidfd int, err error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return 0, -1, err
	}
	defer cfgW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return 0, -1, err
	}
	defer statR.Close()
	// The init's ends, from fd 3 on (initConfigF…): closed here once it
	// has them, so its death ends the status read.
	theirs := []*os.File{cfgR, statW}
	closeTheirs := func() {
		for _, f := range theirs {
			f.Close()
		}
		theirs = nil
	}
	defer closeTheirs()
	// Its own descriptor of the root mount (an os.File of the agent's
	// would close it when collected) and the exec socket, listening.
	dup, err := unix.FcntlInt(uintptr(rootFD), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, -1, err
	}
	theirs = append(theirs, os.NewFile(uintptr(dup), "root"))
	sock, err := listenUnix(filepath.Join(a.runDir, spec.ID+sockSuffix))
	if err != nil {
		return 0, -1, standby.Errorf(standby.EUnavailable, "start instance %s: exec socket: %v", spec.ID, err)
	}
	theirs = append(theirs, sock)
	pidfd = -1
	// The init's Go runtime gets as many Ps as the instance has vcpus: it
	// starts before it joins the cgroup, so it would size itself to the
	// machine, and every thread it need not start is one less to stop
	// when it changes uid.
	procs := int(math.Ceil(spec.Resources.WithDefaults().VCPUs))
	proc, err := a.spawner.start(sandboxSelf, []string{"standby", InitCommand}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{"PATH=" + defaultPath, "GOMAXPROCS=" + strconv.Itoa(max(procs, 1))},
		Files: append(stdio, theirs...),
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			PidFD:      &pidfd,
			Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
			// Still root, but already the instance's group and none
			// other: what the init gives up later costs it less.
			Credential: &syscall.Credential{Uid: 0, Gid: uint32(iso.UID), Groups: []uint32{}},
		},
	})
	closeTheirs()
	if err != nil {
		return 0, -1, standby.Errorf(standby.EUnavailable, "start instance %s: start init: %v", spec.ID, err)
	}
	pid = proc.Pid
	_ = proc.Release()
	fail := func(err error) (int, int, error) {
		killGroup(pid, syscall.SIGKILL)
		waitReap(pid)
		if pidfd >= 0 {
			syscall.Close(pidfd)
		}
		if standby.ErrorCode(err) == standby.EValidation {
			return 0, -1, err
		}
		return 0, -1, standby.Errorf(standby.EUnavailable, "start instance %s: %v", spec.ID, err)
	}
	if err := iso.cg.add(pid); err != nil {
		return fail(fmt.Errorf("join cgroup: %w", err))
	}
	hostname := spec.ID
	if len(hostname) > 63 {
		hostname = hostname[:63]
	}
	cfg := initConfig{Hostname: hostname, UID: iso.UID, Argv: argv, Env: env, Workdir: workdir}
	if err := json.NewEncoder(cfgW).Encode(cfg); err != nil {
		return fail(fmt.Errorf("configure init: %w", err))
	}
	cfgW.Close()
	line, _ := bufio.NewReader(io.LimitReader(statR, 64<<10)).ReadString('\n')
	if _, err := parseInitStatus(line); err != nil {
		return fail(err)
	}
	return pid, pidfd, nil
}

// listenUnix makes a listening unix socket at path, 0600, reached
// through a descriptor of its dir: a socket path holds 107 bytes only.
func listenUnix(path string) (*os.File, error) {
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	os.Remove(path)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: fdPath(int(dir.Fd())) + "/" + filepath.Base(path)})
	if err == nil {
		err = os.Chmod(path, 0o600)
	}
	if err == nil {
		err = unix.Listen(fd, 16)
	}
	if err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// teardown releases what an ended instance held: its cgroup, its uid and
// its root (the tmpfs when isolated), keeping its artefacts (copied out of
// the root) and logs, and marks when it ended for the artefact sweeper.
// Its processes must be gone.
func (a *Local) teardown(inst *instance) {
	if inst.iso == nil {
		root := inst.root()
		if err := saveArtefacts(filepath.Join(root, "artefacts"), inst.keptArtefacts()); err != nil {
			a.log.Error("cannot keep instance artefacts", "instance", inst.id, "err", err)
		} else {
			os.RemoveAll(root) // on disk: kept, with its artefacts, when they could not be copied
		}
	} else {
		inst.rootMu.Lock()
		if inst.rootFD >= 0 {
			if err := saveArtefacts(filepath.Join(fdPath(inst.rootFD), "artefacts"), inst.keptArtefacts()); err != nil {
				a.log.Error("cannot keep instance artefacts", "instance", inst.id, "err", err)
			}
		}
		a.releaseRoot(inst.iso, inst.rootFD)
		inst.rootFD = -1
		inst.rootMu.Unlock()
		os.Remove(inst.sockPath())
	}
	// The stdout log's mtime says when it ended, for the sweeper.
	now := a.clock.Now()
	_ = os.Chtimes(inst.logPath("stdout"), now, now)
}

// oomKilled reports whether the kernel killed a process of the instance
// for its memory limit.
func (inst *instance) oomKilled() bool {
	if inst.iso == nil {
		return false
	}
	cg, err := inst.iso.cgroup()
	return err == nil && cg.oomKills() > 0
}

// sweepOrphans stops isolated instances that no state file names. An
// agent that dies between starting an instance's init and recording it in
// state file (a crash, kill -9) leaves a process nothing would ever stop;
// every instance lives in a cgroup under the agent's scope, so the scope
// lists them all. It runs in New, after adoptAll.
func (a *Local) sweepOrphans() {
	if a.cgKind == "" {
		return
	}
	scope := &cgroup{kind: a.cgKind, path: a.cgScope}
	if err := scope.findDirs(); err != nil {
		return
	}
	// Every hierarchy is looked at: a removal cut short can leave an
	// instance's cgroup in some and not others.
	orphans := map[string]bool{}
	for _, dir := range scope.dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if id := e.Name(); e.IsDir() && strings.HasPrefix(id, standby.PrefixInstance) && a.running[id] == nil {
				orphans[id] = true
			}
		}
	}
	for id := range orphans {
		cg := &cgroup{kind: a.cgKind, path: a.cgScope + "/" + id}
		err := cg.findDirs()
		if err == nil {
			err = cg.destroy()
		}
		if err != nil {
			a.log.Error("cannot stop an orphaned instance", "instance", id, "err", err)
			continue
		}
		a.log.Info("stopped an orphaned instance no state recorded", "instance", id)
	}
}

// removeScope removes the agent's cgroup scope once no instance cgroup is
// left in it (the removal fails, harmlessly, while instances keep running),
// so agents that come and go leave no empty cgroups behind: every CPU
// quota write walks the whole cgroup tree.
func (a *Local) removeScope() {
	if a.cgKind == "" {
		return
	}
	scope := &cgroup{kind: a.cgKind, path: a.cgScope}
	if scope.findDirs() != nil {
		return
	}
	for _, d := range scope.dirs {
		_ = os.Remove(d)
	}
}

// Purge stops every isolated instance an agent on dataDir left running and
// releases their cgroups, root mounts and the agent's cgroup scope. It is
// for tools and tests that ran a server and want nothing of it left (the
// server leaves instances running on purpose when it stops); a serving
// agent does the same for itself on start. Plain (unisolated) instances
// are the caller's to find.
func Purge(dataDir string) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return
	}
	kind, err := cgroupHierarchy()
	if err != nil || os.Geteuid() != 0 {
		return
	}
	a := &Local{
		log:     slog.New(slog.DiscardHandler),
		instDir: filepath.Join(abs, "instances"),
		runDir:  filepath.Join(abs, "run"),
		running: map[string]*instance{},
		cgKind:  kind,
		cgScope: cgroupScope(abs),
	}
	a.sweepOrphans()
	a.removeScope()
	// Every instance is stopped: their state files are stale.
	_ = unix.Unmount(a.runDir, unix.MNT_DETACH)
}

// mountRunDir mounts a tmpfs on the run dir unless one is there (an agent
// restarted on the same data dir). Per-instance files that need not
// outlive the machine live there: writing them to the disk cost more than
// the rest of an isolated start's file work, and the disk blocks an
// instance's init touched stayed charged to its memory cgroup after it
// was removed, which slowed every later cgroup operation.
func mountRunDir(dir string) error {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return err
	}
	if st.Dev != parent.Dev {
		return nil // already a mount point
	}
	// Entries on disk are instances an agent without isolation left
	// running: the tmpfs would hide their state.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s holds instances of an agent run without isolation: stop them, or run with --isolation none", dir)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64m"); err != nil {
		return fmt.Errorf("mount run dir: %w", err)
	}
	return nil
}

// unmountRunDir unmounts the run dir's tmpfs once no instance runs or
// starts, so a data dir whose agent stopped its instances can be removed.
func (a *Local) unmountRunDir() {
	if a.cgKind == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.running)+len(a.pending) > 0 {
		return
	}
	_ = unix.Unmount(a.runDir, unix.MNT_DETACH)
}
