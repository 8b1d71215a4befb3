package standby

import (
	"context"
	"io"
	"time"
)

// InstanceSpec is everything an agent needs to start an instance.
type InstanceSpec struct {
	ID        string `json:"id"`
	ProjectID string `json:"project_id"`
	PoolID    string `json:"pool_id,omitempty"`
	Build     *Build `json:"build"`
	// Env is added to (and overrides) the build's env.
	Env map[string]string `json:"env,omitempty"`
	// Resources apply to this instance (the pool's or sandbox's, else the build's).
	Resources Resources `json:"resources"`
}

// Instance event types.
const (
	EventReady  = "ready"  // passed its readiness check
	EventFailed = "failed" // failed to start, failed its checks, or exited
)

// InstanceEvent is what an agent reports about an instance it runs.
type InstanceEvent struct {
	InstanceID string    `json:"instance_id"`
	HostID     string    `json:"host_id"`
	Type       string    `json:"type"`
	Reason     string    `json:"reason,omitempty"` // e.g. "exited with status 1", "readiness check timed out", "oom_killed"
	At         time.Time `json:"at"`
	// Address and Ports say where a ready instance listens (ready events
	// only), so recording readiness records them too.
	Address string         `json:"address,omitempty"`
	Ports   map[string]int `json:"ports,omitempty"`
}

// InstanceInfo is where a started instance listens.
type InstanceInfo struct {
	ID      string         `json:"id"`
	Address string         `json:"address"`
	Ports   map[string]int `json:"ports"`
	PID     int            `json:"pid"`
	Ready   bool           `json:"ready"`
}

// LogOptions selects log output.
type LogOptions struct {
	Stream string // "stdout" (default) or "stderr"
	Tail   int    // last N lines; 0 means everything
	Follow bool   // keep writing new output until ctx ends or the instance stops
}

// Agent runs instances on one host. The local agent runs in the server
// process; a remote one behind the same interface comes later.
type Agent interface {
	// Host describes the agent's machine.
	Host() Host
	// StartInstance starts the instance's process and returns where it
	// listens. Readiness and death come later as events. unavailable: the
	// host cannot take it.
	StartInstance(ctx context.Context, spec InstanceSpec) (InstanceInfo, error)
	// StopInstance stops the instance's whole process group (SIGTERM, then
	// SIGKILL after the grace period) and returns when it is gone, or
	// right away if it is not running. It reports no event for it.
	StopInstance(ctx context.Context, id string) error
	// Instances lists the instances the agent runs (including re-adopted
	// ones after a restart).
	Instances(ctx context.Context) ([]InstanceInfo, error)
	// Logs copies an instance's captured output to w. not_found.
	Logs(ctx context.Context, id string, opt LogOptions, w io.Writer) error
	// Events delivers instance events. It is closed when the agent stops.
	Events() <-chan InstanceEvent
	InstanceAccess
}

// ReasonOOMKilled is the failed event's reason (and the sandbox's error)
// when an instance was killed for using more than its memory_mb.
const ReasonOOMKilled = "oom_killed"

// Host isolation values (Host.Isolation).
const (
	IsolationNone = "none" // plain processes: no namespaces, no limits
	// IsolationNamespaces is the prefix of the value when instances run
	// in their own PID, mount, UTS and IPC namespaces with cgroup limits;
	// the cgroup hierarchy in use follows ("namespaces+cgroup1").
	IsolationNamespaces = "namespaces"
)

// Exec limits.
const (
	DefaultExecTimeoutMS = 60_000
	MaxExecTimeoutMS     = 3600_000
	// MaxExecOutput is how much of each of stdout and stderr an exec
	// returns; the rest is dropped and the result says so.
	MaxExecOutput = 1 << 20
)

// ExecRequest runs a command inside an instance, in its namespaces, cgroup
// and uid.
type ExecRequest struct {
	Cmd []string `json:"cmd"`
	// Env is added to (and overrides) the instance's own env.
	Env map[string]string `json:"env,omitempty"`
	// Cwd is relative to the sandbox root (default: the build's workdir).
	Cwd   string `json:"cwd,omitempty"`
	Stdin string `json:"stdin,omitempty"`
	// TimeoutMS bounds the run (default DefaultExecTimeoutMS); at the
	// deadline the whole process tree is killed.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// ExecResult is how an exec ended. ExitCode is -1 when the command was
// killed (TimedOut, or by a signal).
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	TimedOut        bool   `json:"timed_out"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
}

// Artefact is a file an instance wrote under $STANDBY_ARTEFACTS_DIR.
type Artefact struct {
	Path       string    `json:"path"` // relative to the artefacts dir, slash-separated
	Size       int64     `json:"size"`
	ModifiedAt time.Time `json:"modified_at"`
}

// Usage is an instance's resource use (seed 002's usage shape): CPU in
// cores averaged since the previous reading (or the start), memory and
// disk in bytes.
type Usage struct {
	Time time.Time `json:"time"`
	CPU  float64   `json:"cpu"`
	Mem  int64     `json:"mem"`
	Disk int64     `json:"disk"`
}

// InstanceStats is an instance's usage and quotas. Quotas are 0 when not
// enforced; Cgroup says whether the numbers come from the instance's
// cgroup (isolation on) or from its processes in /proc (isolation none).
type InstanceStats struct {
	Usage     Usage   `json:"usage"`
	Uptime    int64   `json:"uptime"` // seconds
	MemQuota  int64   `json:"mem_quota"`
	DiskQuota int64   `json:"disk_quota"`
	CPUQuota  float64 `json:"cpu_quota"`
	Isolation string  `json:"isolation"`
	Cgroup    bool    `json:"cgroup"`
}

// InstanceAccess is what an agent offers inside its running instances,
// besides starting and stopping them: commands, files, artefacts, stats.
// Paths are relative to the instance's root and never leave it.
type InstanceAccess interface {
	// Exec runs req inside the instance and waits for it. not_found: no
	// such running instance; validation_failed: bad cmd, cwd or timeout.
	Exec(ctx context.Context, id string, req ExecRequest) (ExecResult, error)
	// WriteFile writes r to path (creating parents). not_found: no such
	// running instance; validation_failed: path escapes the root or is
	// not writable (field "path").
	WriteFile(ctx context.Context, id, path string, r io.Reader) error
	// ReadFile copies the file at path to w. not_found: no such running
	// instance or file; validation_failed: path escapes the root or is a
	// directory (field "path").
	ReadFile(ctx context.Context, id, path string, w io.Writer) error
	// Artefacts lists the instance's artefacts by path, a page at a time;
	// they stay listed for a day after the instance ended. not_found: no
	// such instance; validation_failed: bad page token.
	Artefacts(ctx context.Context, id string, page Page) (items []Artefact, next string, err error)
	// ArtefactContent copies one artefact to w. not_found: no such
	// instance or artefact; validation_failed: path escapes the artefacts
	// dir (field "file_path").
	ArtefactContent(ctx context.Context, id, path string, w io.Writer) error
	// Stats reads the instance's usage and quotas. not_found: no such
	// running instance.
	Stats(ctx context.Context, id string) (InstanceStats, error)
}
