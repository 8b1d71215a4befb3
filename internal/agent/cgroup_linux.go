package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/standbyhq/standby"
)

// Cgroup hierarchies.
const (
	cgroupV1 = "cgroup1"
	cgroupV2 = "cgroup2"
)

// cpuPeriod is the CFS period the vcpus quota is a share of.
const cpuPeriod = 100_000 // µs

// v1Controllers are the cgroup v1 hierarchies an instance's cgroup spans:
// the limits (memory, cpu, pids) and the CPU accounting (cpuacct). Fewer
// hierarchies, fewer mkdirs per start.
var v1Controllers = []cgroup1.Name{cgroup1.Memory, cgroup1.Cpu, cgroup1.Cpuacct, cgroup1.Pids}

// cgroupHierarchy returns the hierarchy instances get on this machine: v1
// when the controllers are mounted there (legacy and hybrid mounts), else
// v2.
func cgroupHierarchy() (string, error) {
	switch cgroups.Mode() {
	case cgroups.Legacy, cgroups.Hybrid:
		return cgroupV1, nil
	case cgroups.Unified:
		return cgroupV2, nil
	default:
		return "", errors.New("no cgroup hierarchy is mounted")
	}
}

// cgroup is one instance's control group, in either hierarchy.
type cgroup struct {
	kind string
	path string // e.g. /standby/<agent>/<instance>
	v1   cgroup1.Cgroup
	v2   *cgroup2.Manager
	// dirs are the cgroup's directories: one per v1 hierarchy (keyed by
	// controller name), or the one v2 directory under "".
	dirs map[string]string
}

// v1Hierarchy lists the v1 subsystems instances use. It reads the mount
// table once: cgroup1.Default parses /proc/self/mountinfo on every call
// (every start, load and removal of a cgroup), and the mounts do not move
// while the agent runs.
var v1Hierarchy = sync.OnceValues(func() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		for _, n := range v1Controllers {
			if s.Name() == n {
				out = append(out, s)
			}
		}
	}
	return out, nil
})

// newCgroup creates the cgroup at path with the instance's limits: memory
// (swap included) hard at memory_mb, CPU quota vcpus, at most pids tasks.
func newCgroup(kind, path string, r standby.Resources, pids int) (*cgroup, error) {
	mem := int64(r.MemoryMB) << 20
	quota := int64(r.VCPUs * cpuPeriod)
	if quota < 1000 {
		quota = 1000 // the kernel's minimum
	}
	c := &cgroup{kind: kind, path: path}
	switch kind {
	case cgroupV1:
		res := &specs.LinuxResources{
			Memory: &specs.LinuxMemory{Limit: &mem},
			// The period is left at the kernel's default (cpuPeriod) a
			// new cgroup has: every cfs write walks the whole cpu
			// hierarchy (tg_set_bandwidth), so one write, not two.
			CPU:  &specs.LinuxCPU{Quota: &quota},
			Pids: &specs.LinuxPids{Limit: ptr(int64(pids))},
		}
		if swapAccounting() {
			res.Memory.Swap = &mem // memsw: memory plus swap, so no swap
		}
		cg, err := cgroup1.New(cgroup1.StaticPath(path), res, cgroup1.WithHierarchy(v1Hierarchy))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		c.v1 = cg
	case cgroupV2:
		zero := int64(0)
		m, err := cgroup2.NewManager("/sys/fs/cgroup", path, &cgroup2.Resources{
			Memory: &cgroup2.Memory{Max: &mem, Swap: &zero},
			CPU:    &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, ptr(uint64(cpuPeriod)))},
			Pids:   &cgroup2.Pids{Max: int64(pids)},
		})
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", path, err)
		}
		c.v2 = m
	default:
		return nil, fmt.Errorf("unknown cgroup hierarchy %q", kind)
	}
	if err := c.findDirs(); err != nil {
		c.destroy()
		return nil, err
	}
	return c, nil
}

// loadCgroup finds an existing cgroup's directories (a re-adopted or
// running instance's): reading its files and removing it need no more.
func loadCgroup(kind, path string) (*cgroup, error) {
	c := &cgroup{kind: kind, path: path}
	if err := c.findDirs(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(c.mainDir()); err != nil {
		return nil, fmt.Errorf("load cgroup %s: %w", path, err)
	}
	return c, nil
}

// mainDir is the directory whose cgroup.procs lists the cgroup's
// processes: the v2 one, or v1's memory hierarchy's.
func (c *cgroup) mainDir() string {
	if c.kind == cgroupV1 {
		return c.dirs["memory"]
	}
	return c.dirs[""]
}

func (c *cgroup) findDirs() error {
	c.dirs = map[string]string{}
	if c.kind == cgroupV2 {
		c.dirs[""] = filepath.Join("/sys/fs/cgroup", c.path)
		return nil
	}
	subs, err := v1Hierarchy()
	if err != nil {
		return err
	}
	for _, s := range subs {
		if p, ok := s.(interface{ Path(string) string }); ok {
			c.dirs[string(s.Name())] = p.Path(c.path)
		}
	}
	for _, n := range []cgroup1.Name{cgroup1.Memory, cgroup1.Cpuacct} {
		if c.dirs[string(n)] == "" {
			return fmt.Errorf("cgroup v1 controller %s is not mounted", n)
		}
	}
	return nil
}

// swapAccounting reports whether cgroup v1 can limit memory plus swap.
func swapAccounting() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

func ptr[T any](v T) *T { return &v }

// add moves pid into the cgroup (every hierarchy). Only a cgroup newCgroup
// made has the handles it needs.
func (c *cgroup) add(pid int) error {
	switch {
	case c.v1 != nil:
		return c.v1.Add(cgroup1.Process{Pid: pid})
	case c.v2 != nil:
		return c.v2.AddProc(uint64(pid))
	}
	return fmt.Errorf("cgroup %s: add %d: not made by this agent", c.path, pid)
}

// usage reads CPU time used (ns) and memory in use (bytes).
func (c *cgroup) usage() (cpuNs uint64, mem int64, err error) {
	if c.kind == cgroupV1 {
		if cpuNs, err = readUint(filepath.Join(c.dirs["cpuacct"], "cpuacct.usage")); err != nil {
			return 0, 0, err
		}
		m, err := readUint(filepath.Join(c.dirs["memory"], "memory.usage_in_bytes"))
		return cpuNs, int64(m), err
	}
	kv, err := readKV(filepath.Join(c.dirs[""], "cpu.stat"))
	if err != nil {
		return 0, 0, err
	}
	m, err := readUint(filepath.Join(c.dirs[""], "memory.current"))
	return kv["usage_usec"] * 1000, int64(m), err
}

// oomKills is how many of the cgroup's processes the kernel killed for
// exceeding its memory limit.
func (c *cgroup) oomKills() uint64 {
	file := filepath.Join(c.dirs[""], "memory.events")
	if c.kind == cgroupV1 {
		file = filepath.Join(c.dirs["memory"], "memory.oom_control")
	}
	kv, _ := readKV(file)
	return kv["oom_kill"]
}

// procs lists the processes in the cgroup.
func (c *cgroup) procs() []int { return readProcs(c.mainDir()) }

// readProcs lists the processes of one cgroup directory (none when it is
// gone).
func readProcs(dir string) []int {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// destroy kills whatever still runs in the cgroup and removes its
// directories. The instance's PID namespace normally took everything with
// its init, so the kill is the backstop. A process that has exited but is
// not yet reaped keeps some v1 hierarchies' directories (pids, cpu) busy
// after the memory one is empty, so each directory is listed and removed
// on its own, retried until all are gone or 5 s pass; a directory already
// gone counts as removed, so a half-removed cgroup can be finished.
func (c *cgroup) destroy() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var busy []string
		for _, d := range c.dirs {
			for _, pid := range readProcs(d) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err := unix.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				busy = append(busy, d)
			}
		}
		if len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: cannot remove %v", c.path, busy)
		}
		time.Sleep(groupPoll)
	}
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// readKV parses "key value" lines (cpu.stat, memory.events, oom_control).
func readKV(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}
