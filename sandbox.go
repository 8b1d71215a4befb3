package standby

import (
	"encoding/json"
	"time"
)

// Sandbox states.
const (
	SandboxRunning  = "running"
	SandboxStopping = "stopping"
	SandboxStopped  = "stopped"
	SandboxFailed   = "failed"
	SandboxExpired  = "expired"
)

// Checkout sources.
const (
	SourceWarmPool = "warm_pool"
	SourceCold     = "cold"
)

// Sandbox limits.
const (
	MaxWaitMS        = 60_000
	MaxTimeoutMS     = 7 * 24 * 3600 * 1000
	DefaultTimeoutMS = DefaultIdleTimeoutSeconds * 1000
)

// WarmPoolCheckout says where a sandbox's instance came from.
type WarmPoolCheckout struct {
	Source string `json:"source"` // warm_pool or cold
	Hit    bool   `json:"hit"`
	ID     string `json:"id,omitempty"` // pool id
	Mode   string `json:"mode"`
}

// Sandbox is an instance handed out to a user.
type Sandbox struct {
	ID               string            `json:"id"`
	ProjectID        string            `json:"-"`
	Template         string            `json:"template"`
	TemplateBuildID  string            `json:"template_build_id"`
	Config           Resources         `json:"config"`
	State            string            `json:"state"`
	Address          string            `json:"address"`
	Ports            map[string]int    `json:"ports"`
	HostID           string            `json:"host_id"`
	InstanceID       string            `json:"instance_id"`
	CreatedAt        time.Time         `json:"created_at"`
	StartedAt        time.Time         `json:"started_at"`
	TimeoutMS        int64             `json:"timeout_ms"`
	ExpiresAt        time.Time         `json:"expires_at"`
	StoppedAt        *time.Time        `json:"stopped_at"`
	Error            *string           `json:"error"`
	Metadata         json.RawMessage   `json:"metadata"`
	Labels           map[string]string `json:"labels"`
	Annotations      map[string]string `json:"annotations"`
	WarmPoolCheckout WarmPoolCheckout  `json:"warm_pool_checkout"`
	Version          int64             `json:"version"`
}

// Ended reports whether the sandbox reached a final state.
func (s *Sandbox) Ended() bool {
	return s.State == SandboxStopped || s.State == SandboxFailed || s.State == SandboxExpired
}

// CheckoutRequest asks the store to claim one ready instance and create the
// sandbox for it in one transaction.
type CheckoutRequest struct {
	ProjectID string
	// PoolIDs are the candidate pools, in preference order. Only enabled
	// pools are used.
	PoolIDs []string
	// BuildID, when set, restricts candidates to instances of that build.
	BuildID string
	// Selectors are tried in order (seed 001); the first that matches any
	// ready instance decides. Labels matched are the pool's labels overlaid
	// by the instance's own.
	Selectors []Selector
	// Sandbox is the new sandbox; the store fills InstanceID, HostID,
	// Address, Ports, TemplateBuildID, WarmPoolCheckout.ID and Hit, and sets
	// Version to 1.
	Sandbox *Sandbox
	Now     time.Time
}
