package standby

import (
	"context"
	"time"
)

// ProjectFilter selects projects.
type ProjectFilter struct {
	Page Page
}

// APIKeyFilter selects API keys of one project.
type APIKeyFilter struct {
	ProjectID      string
	IncludeRevoked bool
	Page           Page
}

// TemplateFilter selects templates of one project.
type TemplateFilter struct {
	ProjectID string
	Labels    map[string]string
	Page      Page
}

// BuildFilter selects builds of one template, newest first.
type BuildFilter struct {
	ProjectID string
	Template  string
	Page      Page
}

// WarmPoolFilter selects pools. Deleted pools are left out unless
// IncludeDeleted.
type WarmPoolFilter struct {
	ProjectID      string // "" means every project (controller use)
	IDs            []string
	States         []string
	Labels         map[string]string
	IncludeDeleted bool
	Page           Page
}

// InstanceFilter selects instances.
type InstanceFilter struct {
	ProjectID string
	PoolID    string
	HostID    string
	States    []string
	// NoPool selects instances without a pool (cold-started sandboxes).
	NoPool bool
	// Brief fills only ID, ProjectID, PoolID, State, TemplateBuildID,
	// HostID, RolloutGeneration and the times (what the controller plans
	// with), leaving the maps nil: a pool's look reads every instance of
	// the pool, often, and decoding the rest was most of its cost.
	Brief bool
	Page  Page
}

// SandboxFilter selects sandboxes.
type SandboxFilter struct {
	ProjectID  string
	States     []string
	Template   string
	WarmPoolID string
	Labels     map[string]string
	// ExpiresBefore selects running sandboxes whose expires_at is before it.
	ExpiresBefore *time.Time
	Page          Page
}

// Store persists everything the control plane knows. Every method is safe
// for concurrent use; every write is durable when it returns nil.
//
// Find* of one record returns not_found when it does not exist. List
// methods return the page's records and the token of the next page ("" when
// there is none); an unknown or malformed token is bad_request. Update*
// methods take a function that edits the current record inside the
// store's transaction; an error from it aborts the update and is returned
// as is. Version counts start at 1 and go up by one per Update*.
type Store interface {
	// CreateProject stores a new project. conflict: name taken.
	CreateProject(ctx context.Context, p *Project) error
	// FindProject returns a project by id. not_found.
	FindProject(ctx context.Context, id string) (*Project, error)
	// FindProjectByName returns a project by name. not_found.
	FindProjectByName(ctx context.Context, name string) (*Project, error)
	// FindProjects lists projects in creation order.
	FindProjects(ctx context.Context, f ProjectFilter) ([]*Project, string, error)
	// UpdateProject edits a project. not_found.
	UpdateProject(ctx context.Context, id string, fn func(*Project) error) (*Project, error)

	// CreateAPIKey stores a key (its hash). not_found: project.
	CreateAPIKey(ctx context.Context, k *APIKey) error
	// FindAPIKey returns a key by id, revoked or not. not_found.
	FindAPIKey(ctx context.Context, id string) (*APIKey, error)
	// FindAPIKeyByHash returns the unrevoked key with that hash. not_found.
	FindAPIKeyByHash(ctx context.Context, hash string) (*APIKey, error)
	// FindAPIKeys lists a project's keys in creation order.
	FindAPIKeys(ctx context.Context, f APIKeyFilter) ([]*APIKey, string, error)
	// RevokeAPIKey revokes a key at once. not_found (also when already revoked).
	RevokeAPIKey(ctx context.Context, id string, now time.Time) error

	// CreateTemplate stores a template. conflict: name taken in the project.
	CreateTemplate(ctx context.Context, t *Template) error
	// FindTemplate returns a template with its tags. not_found.
	FindTemplate(ctx context.Context, projectID, name string) (*Template, error)
	// FindTemplates lists templates in creation order.
	FindTemplates(ctx context.Context, f TemplateFilter) ([]*Template, string, error)
	// DeleteTemplate deletes a template and its builds and tags. not_found;
	// conflict while a pool that is not deleted, or a sandbox that has not
	// ended, uses one of its builds.
	DeleteTemplate(ctx context.Context, projectID, name string) error
	// CreateBuild stores an immutable build: it assigns Number (1, 2, …
	// per template), moves "latest" and each of b.Tags to it, and fills
	// b.Tags with every tag now on it. not_found: template.
	CreateBuild(ctx context.Context, b *Build) error
	// FindBuild returns a build with its current tags. not_found.
	FindBuild(ctx context.Context, projectID, id string) (*Build, error)
	// FindBuilds lists a template's builds newest first. not_found: template.
	FindBuilds(ctx context.Context, f BuildFilter) ([]*Build, string, error)
	// FindTag returns the build id a tag points at. not_found.
	FindTag(ctx context.Context, projectID, template, tag string) (string, error)
	// SetTag points a tag at a build of the same template. not_found:
	// template or build.
	SetTag(ctx context.Context, projectID, template, tag, buildID string) error

	// CreateWarmPool stores a pool (Version 1).
	CreateWarmPool(ctx context.Context, p *WarmPool) error
	// FindWarmPool returns a pool, deleted or not, with Status counts
	// computed from the records (Target and Unavailable as last written by
	// the controller). not_found.
	FindWarmPool(ctx context.Context, id string) (*WarmPool, error)
	// FindWarmPools lists pools in creation order, with Status as above.
	FindWarmPools(ctx context.Context, f WarmPoolFilter) ([]*WarmPool, string, error)
	// UpdateWarmPool edits a pool's spec; version+1 and updated_at=now
	// (the store sets updated_at from the pool's value after fn if fn set
	// it, else leaves it). not_found.
	UpdateWarmPool(ctx context.Context, id string, fn func(*WarmPool) error) (*WarmPool, error)
	// SetWarmPoolStatus records the controller's view; no version change.
	// not_found.
	SetWarmPoolStatus(ctx context.Context, id string, s WarmPoolControllerStatus) error

	// CreateInstance stores an instance.
	CreateInstance(ctx context.Context, i *Instance) error
	// FindInstance returns an instance. not_found.
	FindInstance(ctx context.Context, id string) (*Instance, error)
	// FindInstances lists instances in creation order.
	FindInstances(ctx context.Context, f InstanceFilter) ([]*Instance, string, error)
	// CountInstances counts the instances matching f (f.Page is ignored),
	// without reading them: the controller counts a host's live instances
	// on every look at a pool.
	CountInstances(ctx context.Context, f InstanceFilter) (int, error)
	// UpdateInstance edits an instance. not_found.
	UpdateInstance(ctx context.Context, id string, fn func(*Instance) error) (*Instance, error)
	// DeleteInstance removes an instance record. not_found.
	DeleteInstance(ctx context.Context, id string) error
	// DeleteFailedInstances removes failed instances that ended before t and
	// returns how many.
	DeleteFailedInstances(ctx context.Context, before time.Time) (int, error)

	// Checkout claims one ready instance and creates its sandbox in one
	// transaction: no instance is ever claimed twice. It picks, for the
	// first selector that matches any candidate, the candidate that has been
	// ready longest. warm_pool_unavailable: nothing matches.
	Checkout(ctx context.Context, req CheckoutRequest) (*Sandbox, error)
	// CreateSandbox stores a sandbox whose instance (already stored, not in
	// a pool) it claims in the same transaction: the instance becomes
	// claimed with SandboxID set. conflict: the instance is not warming or
	// ready.
	CreateSandbox(ctx context.Context, sb *Sandbox) error
	// FindSandbox returns a sandbox. not_found.
	FindSandbox(ctx context.Context, id string) (*Sandbox, error)
	// FindSandboxes lists sandboxes in creation order.
	FindSandboxes(ctx context.Context, f SandboxFilter) ([]*Sandbox, string, error)
	// UpdateSandbox edits a sandbox. not_found.
	UpdateSandbox(ctx context.Context, id string, fn func(*Sandbox) error) (*Sandbox, error)

	// UpsertHost creates or replaces a host record.
	UpsertHost(ctx context.Context, h *Host) error
	// FindHost returns a host. not_found.
	FindHost(ctx context.Context, id string) (*Host, error)
	// FindHosts lists every host.
	FindHosts(ctx context.Context) ([]*Host, error)

	// ReserveIdempotencyKey stores rec (Status 0: in progress) unless a
	// record with the same scope and key exists, which it returns instead.
	// It returns nil, nil when rec was stored.
	ReserveIdempotencyKey(ctx context.Context, rec *IdempotencyRecord) (*IdempotencyRecord, error)
	// CompleteIdempotencyKey stores the response of a reserved key.
	CompleteIdempotencyKey(ctx context.Context, rec *IdempotencyRecord) error
	// ReleaseIdempotencyKey forgets a reserved key whose request failed
	// without doing any work, so that a retry runs again.
	ReleaseIdempotencyKey(ctx context.Context, scope, key string) error
	// DeleteIdempotencyKeys forgets records created before t.
	DeleteIdempotencyKeys(ctx context.Context, before time.Time) (int, error)

	// Close releases the store.
	Close() error
}
