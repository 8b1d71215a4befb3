// Package standby holds the domain of the standby orchestrator: the resources
// users see (projects, keys, templates, builds, warm pools, instances,
// sandboxes, hosts), their validation, the error codes of the API contract,
// and the two contracts with several implementations: Store and Agent.
//
// It imports nothing from this module and only the standard library.
package standby

import "time"

// Roles an API key can have.
const (
	RoleAdmin     = "admin"     // everything, all projects, keys
	RoleDeveloper = "developer" // read and write in its project
	RoleViewer    = "viewer"    // read only
)

// DefaultProjectName is the project created on first start.
const DefaultProjectName = "default"

// Clock tells the time. Everything that reads the time takes one, so tests
// can move it.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock. Times are UTC and truncated to microseconds
// so that every store round-trips them unchanged.
type SystemClock struct{}

// Now returns the current time in UTC, truncated to microseconds.
func (SystemClock) Now() time.Time { return Now() }

// Now returns the current time in UTC truncated to microseconds.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// Page asks a list for one page: Size items (1–1000, default 100) after Token.
// Tokens are opaque strings made by the store.
type Page struct {
	Size  int
	Token string
}

// Page sizes.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Limit returns the page size to use.
func (p Page) Limit() int {
	if p.Size <= 0 {
		return DefaultPageSize
	}
	if p.Size > MaxPageSize {
		return MaxPageSize
	}
	return p.Size
}

// Ptr returns a pointer to v; handy for the many nullable fields.
func Ptr[T any](v T) *T { return &v }
