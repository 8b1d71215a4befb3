package standby

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Quotas limit a project. Nil means unlimited.
type Quotas struct {
	MaxSandboxes *int `json:"max_sandboxes"`
	MaxVCPUs     *int `json:"max_vcpus"`
	MaxMemoryMB  *int `json:"max_memory_mb"`
}

// Project owns keys and every resource.
type Project struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Quotas    Quotas    `json:"quotas"`
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// APIKey is a project's credential. The secret is never stored, only its
// hash.
type APIKey struct {
	ID        string     `json:"id"`
	ProjectID string     `json:"project_id"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	Hash      string     `json:"-"`
	Prefix    string     `json:"prefix"` // first characters of the secret, to recognise it
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at"`
	// Secret is set only in the response that creates the key.
	Secret string `json:"secret,omitempty"`
}

// KeySecretPrefix begins every API key secret.
const KeySecretPrefix = "sbk_"

// NewKeySecret returns a fresh API key secret.
func NewKeySecret() string { return KeySecretPrefix + NewSecret(40) }

// HashKey returns the stored hash of an API key secret.
func HashKey(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ValidRole reports whether r is a known role.
func ValidRole(r string) bool {
	return r == RoleAdmin || r == RoleDeveloper || r == RoleViewer
}

// Host states.
const (
	HostUp       = "up"
	HostDown     = "down"
	HostDraining = "draining"
)

// Host is a machine running an agent.
type Host struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	State           string    `json:"state"`
	HostPoolID      string    `json:"host_pool_id"`
	CellID          string    `json:"cell_id"`
	Address         string    `json:"address"`
	Isolation       string    `json:"isolation"` // "none" or the mechanism in use
	Capacity        Resources `json:"capacity"`
	MaxInstances    int       `json:"max_instances"`
	LastHeartbeatAt time.Time `json:"last_heartbeat_at"`
	CreatedAt       time.Time `json:"created_at"`
}

// IdempotencyRecord remembers the response to a POST with an
// Idempotency-Key. Status 0 means the first request is still running.
type IdempotencyRecord struct {
	Scope       string // api key id (keys of one project share nothing)
	Key         string
	RequestHash string // method, path and body digest
	Status      int
	Body        []byte
	Headers     map[string]string
	CreatedAt   time.Time
}
