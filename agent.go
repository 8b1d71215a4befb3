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
}
