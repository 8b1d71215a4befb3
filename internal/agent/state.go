package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/standbyhq/standby"
)

// stateFile is <run dir>/<id>.json: what a restarted agent needs to re-adopt
// the instance and tell its process from a later one with the same pid.
type stateFile struct {
	Spec      standby.InstanceSpec `json:"spec"`
	PID       int                  `json:"pid"`
	StartTick uint64               `json:"start_tick"`
	StartedAt time.Time            `json:"started_at"`
	Address   string               `json:"address"`
	Ports     map[string]int       `json:"ports"`
	Ready     bool                 `json:"ready"`
	Env       []string             `json:"env"`
	// Isolation is set for an isolated instance: PID is its init's.
	Isolation *isolation `json:"isolation,omitempty"`
}

const stateSuffix = ".json"

// writeState writes the state file atomically (temp file, fsync, rename,
// fsync of the directory), so a crash leaves the old or the new file.
func (inst *instance) writeState(ready bool) error {
	b, err := json.Marshal(stateFile{
		Spec: inst.spec, PID: inst.pid, StartTick: inst.startTick, StartedAt: inst.startedAt,
		Address: inst.address, Ports: inst.ports, Ready: ready, Env: inst.env, Isolation: inst.iso,
	})
	if err != nil {
		return err
	}
	return writeFileAtomic(inst.statePath(), b)
}

func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// removeState deletes the state file: the instance is no longer the agent's to
// re-adopt. Logs stay.
func (inst *instance) removeState() {
	inst.fileMu.Lock()
	defer inst.fileMu.Unlock()
	_ = os.Remove(inst.statePath())
}

// adoptAll runs in New: every state file whose process still runs (same
// pid and start time) is adopted, so Instances lists it as soon as New
// returns. The others' state is deleted and their ids returned, for Run to
// report failed.
func (a *Local) adoptAll() (lost []string) {
	entries, err := os.ReadDir(a.runDir)
	if err != nil {
		a.log.Error("cannot list instances to re-adopt", "dir", a.runDir, "err", err)
		return nil
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), stateSuffix)
		if !ok || e.IsDir() || strings.HasPrefix(id, ".") {
			continue
		}
		path := filepath.Join(a.runDir, e.Name())
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var st stateFile
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err == nil && (st.Spec.ID != id || st.Spec.Build == nil || st.PID <= 0) {
			err = errors.New("incomplete state")
		}
		if err != nil {
			a.log.Error("unreadable instance state; reporting it failed", "instance", id, "err", err)
			os.Remove(path)
			lost = append(lost, id)
			continue
		}
		if !a.adopt(st) {
			lost = append(lost, id)
		}
	}
	return lost
}

// adopt takes over the instance of st, or reports false when its process
// is gone.
func (a *Local) adopt(st stateFile) bool {
	id := st.Spec.ID
	inst := a.newInstance(id)
	inst.spec = st.Spec
	inst.pid = st.PID
	inst.startTick = st.StartTick
	inst.startedAt = st.StartedAt
	inst.address = st.Address
	inst.ports = st.Ports
	if inst.ports == nil {
		inst.ports = map[string]int{}
	}
	inst.readiness = st.Spec.Build.Readiness()
	inst.liveness = st.Spec.Build.Liveness()
	inst.ready = st.Ready
	inst.env = st.Env
	inst.iso = st.Isolation
	if inst.iso != nil {
		a.uids[inst.iso.UID] = id
		if _, err := inst.iso.cgroup(); err != nil {
			a.log.Error("cannot find instance cgroup", "instance", id, "err", err)
		}
	}
	if procGone(st.PID, st.StartTick) {
		a.log.Info("instance died while the agent was down", "instance", id, "pid", st.PID)
		if ps, err := readStat(st.PID); err == nil && ps.startTime == st.StartTick {
			// Its zombie: reap it if it is this process's child (an agent
			// restarted within one process).
			reap(st.PID)
		}
		inst.cancel()
		a.teardown(inst)
		inst.removeState()
		return false
	}
	if inst.iso != nil {
		// Its root is mounted in its own namespace only: hold it again
		// through the init's view, so it outlives the init as at start.
		fd, err := unix.Open("/proc/"+strconv.Itoa(st.PID)+"/root"+sandboxDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			a.log.Error("cannot reach instance root", "instance", id, "err", err)
		} else {
			inst.rootFD = fd
		}
	}
	a.launch(inst, func() { a.waitAdopted(inst) })
	a.log.Info("instance re-adopted", "instance", id, "pid", st.PID, "ready", st.Ready)
	return true
}
