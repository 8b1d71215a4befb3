package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/standbyhq/standby/internal/agent"
)

// The server leaves instances running when it stops, on purpose (the next
// start re-adopts them). The bench and the tests clean up after a server
// with these.

// killInstances kills every instance a stopped server left running on
// dataDir (plain ones by working directory, isolated ones by their init)
// and releases the isolated ones' cgroups and root mounts.
func killInstances(dataDir string) {
	for _, pid := range instancePIDs(dataDir, "") {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// Isolated instances also hold cgroups and tmpfs roots: release them,
	// so no empty cgroup is left behind and the temp dir can be removed
	// (the roots are unmounted once their processes are gone).
	agent.Purge(dataDir)
}

// stateFiles lists the state files of the agent's instances on dataDir
// (of instance id only, if given): one per instance it runs or is
// tearing down.
func stateFiles(dataDir, id string) []string {
	if id == "" {
		id = "*"
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "run", id+".json"))
	return files
}

// instancePIDs returns the pids of processes running in instance
// roots (<data-dir>/run/<id>) under dataDir (only those of instance id, if given).
func instancePIDs(dataDir, id string) []int {
	prefix := filepath.Join(dataDir, "run") + "/"
	if id != "" {
		prefix += id + "/"
	}
	abs, _ := filepath.Abs(prefix)
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && strings.HasPrefix(cwd+"/", abs+"/") {
			pids = append(pids, pid)
		}
	}
	// An isolated instance's processes live in their own mount namespace
	// (their cwd is not under the data dir): its state file names its
	// init, whose death takes them all.
	for _, st := range stateFiles(dataDir, id) {
		var f struct {
			PID       int             `json:"pid"`
			Isolation json.RawMessage `json:"isolation"`
		}
		if b, err := os.ReadFile(st); err == nil && json.Unmarshal(b, &f) == nil && f.PID > 0 && len(f.Isolation) > 0 {
			if syscall.Kill(f.PID, 0) == nil {
				pids = append(pids, f.PID)
			}
		}
	}
	return pids
}
