package client

import (
	"context"
	"net/http"

	"github.com/standbyhq/standby"
)

// CreateProject creates a project (admin keys only).
func (c *Client) CreateProject(ctx context.Context, name string, opts ...RequestOption) (*standby.Project, error) {
	return get[standby.Project](ctx, c, http.MethodPost, "/v1/projects", nil, map[string]string{"name": name}, opts...)
}

// ListProjects returns one page of projects and the next page's token ("" on
// the last page).
func (c *Client) ListProjects(ctx context.Context, opts ListOptions) ([]standby.Project, string, error) {
	return list[standby.Project](ctx, c, "/v1/projects", opts.values())
}

// AllProjects returns every project from opts.PageToken on.
func (c *Client) AllProjects(ctx context.Context, opts ListOptions) ([]standby.Project, error) {
	return all(opts.PageToken, func(t string) ([]standby.Project, string, error) {
		opts.PageToken = t
		return c.ListProjects(ctx, opts)
	})
}

// GetProject returns a project.
func (c *Client) GetProject(ctx context.Context, id string) (*standby.Project, error) {
	return get[standby.Project](ctx, c, http.MethodGet, "/v1/projects/"+esc(id), nil, nil)
}

// UpdateProject merge-patches a project's top-level fields (e.g.
// {"quotas": {...}}); a nil value clears a nullable field. It returns nil
// when the server answers 204.
func (c *Client) UpdateProject(ctx context.Context, id string, patch map[string]any, opts ...RequestOption) (*standby.Project, error) {
	return maybe[standby.Project](ctx, c, http.MethodPatch, "/v1/projects/"+esc(id), nil, patch, opts...)
}

// CreateAPIKey creates a key in a project with a role (admin, developer,
// viewer). The returned key's Secret is shown this once.
func (c *Client) CreateAPIKey(ctx context.Context, projectID, name, role string, opts ...RequestOption) (*standby.APIKey, error) {
	body := map[string]string{"name": name, "role": role}
	return get[standby.APIKey](ctx, c, http.MethodPost, "/v1/projects/"+esc(projectID)+"/api-keys", nil, body, opts...)
}

// ListAPIKeys returns one page of a project's keys (without secrets).
func (c *Client) ListAPIKeys(ctx context.Context, projectID string, opts ListOptions) ([]standby.APIKey, string, error) {
	return list[standby.APIKey](ctx, c, "/v1/projects/"+esc(projectID)+"/api-keys", opts.values())
}

// AllAPIKeys returns every key of a project from opts.PageToken on.
func (c *Client) AllAPIKeys(ctx context.Context, projectID string, opts ListOptions) ([]standby.APIKey, error) {
	return all(opts.PageToken, func(t string) ([]standby.APIKey, string, error) {
		opts.PageToken = t
		return c.ListAPIKeys(ctx, projectID, opts)
	})
}

// RevokeAPIKey revokes a key at once.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/api-keys/"+esc(id), nil, nil, nil)
	return err
}

// ListHosts returns one page of the hosts running agents.
func (c *Client) ListHosts(ctx context.Context, opts ListOptions) ([]standby.Host, string, error) {
	return list[standby.Host](ctx, c, "/v1/hosts", opts.values())
}

// AllHosts returns every host from opts.PageToken on.
func (c *Client) AllHosts(ctx context.Context, opts ListOptions) ([]standby.Host, error) {
	return all(opts.PageToken, func(t string) ([]standby.Host, string, error) {
		opts.PageToken = t
		return c.ListHosts(ctx, opts)
	})
}
