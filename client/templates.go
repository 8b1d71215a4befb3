package client

import (
	"context"
	"net/http"

	"github.com/standbyhq/standby"
)

// CreateTemplateRequest is the body of POST /v1/templates.
type CreateTemplateRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// CreateTemplate creates a template (without builds).
func (c *Client) CreateTemplate(ctx context.Context, req CreateTemplateRequest, opts ...RequestOption) (*standby.Template, error) {
	return get[standby.Template](ctx, c, http.MethodPost, "/v1/templates", nil, req, opts...)
}

// ListTemplates returns one page of templates.
func (c *Client) ListTemplates(ctx context.Context, opts ListOptions) ([]standby.Template, string, error) {
	return list[standby.Template](ctx, c, "/v1/templates", opts.values())
}

// AllTemplates returns every template from opts.PageToken on.
func (c *Client) AllTemplates(ctx context.Context, opts ListOptions) ([]standby.Template, error) {
	return all(opts.PageToken, func(t string) ([]standby.Template, string, error) {
		opts.PageToken = t
		return c.ListTemplates(ctx, opts)
	})
}

// GetTemplate returns a template by name, with its tags.
func (c *Client) GetTemplate(ctx context.Context, name string) (*standby.Template, error) {
	return get[standby.Template](ctx, c, http.MethodGet, "/v1/templates/"+esc(name), nil, nil)
}

// DeleteTemplate deletes a template and its builds (409 conflict while a
// pool or sandbox uses it).
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/templates/"+esc(name), nil, nil, nil)
	return err
}

// BuildRequest is the body of POST /v1/templates/{name}/builds. Unset
// fields are left out of the request.
type BuildRequest struct {
	StartCmd             []string             `json:"start_cmd"`
	Env                  map[string]string    `json:"env,omitempty"`
	Workdir              string               `json:"workdir,omitempty"`
	Files                map[string]string    `json:"files,omitempty"`
	Ports                []standby.Port       `json:"ports,omitempty"`
	HealthCheck          *standby.HealthCheck `json:"health_check,omitempty"`
	ReadinessHealthCheck *standby.HealthCheck `json:"readiness_health_check,omitempty"`
	Resources            *standby.Resources   `json:"resources,omitempty"`
	Tags                 []string             `json:"tags,omitempty"`
}

// CreateBuild creates an immutable build of a template; it moves latest
// and req.Tags to it.
func (c *Client) CreateBuild(ctx context.Context, template string, req BuildRequest, opts ...RequestOption) (*standby.Build, error) {
	return get[standby.Build](ctx, c, http.MethodPost, "/v1/templates/"+esc(template)+"/builds", nil, req, opts...)
}

// ListBuilds returns one page of a template's builds, newest first.
func (c *Client) ListBuilds(ctx context.Context, template string, opts ListOptions) ([]standby.Build, string, error) {
	return list[standby.Build](ctx, c, "/v1/templates/"+esc(template)+"/builds", opts.values())
}

// AllBuilds returns every build of a template from opts.PageToken on.
func (c *Client) AllBuilds(ctx context.Context, template string, opts ListOptions) ([]standby.Build, error) {
	return all(opts.PageToken, func(t string) ([]standby.Build, string, error) {
		opts.PageToken = t
		return c.ListBuilds(ctx, template, opts)
	})
}

// GetBuild returns one build of a template.
func (c *Client) GetBuild(ctx context.Context, template, id string) (*standby.Build, error) {
	return get[standby.Build](ctx, c, http.MethodGet, "/v1/templates/"+esc(template)+"/builds/"+esc(id), nil, nil)
}

// SetTag points a template's tag at a build; pools tracking the tag roll
// over to it. It returns the build with its tags now (nil when the server
// answers 204).
func (c *Client) SetTag(ctx context.Context, template, tag, buildID string) (*standby.Build, error) {
	path := "/v1/templates/" + esc(template) + "/tags/" + esc(tag)
	return maybe[standby.Build](ctx, c, http.MethodPut, path, nil, map[string]string{"build_id": buildID})
}
