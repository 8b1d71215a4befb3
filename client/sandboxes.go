package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/standbyhq/standby"
)

// WarmPoolRef names the pool a sandbox is checked out of and how.
type WarmPoolRef struct {
	ID string `json:"id,omitempty"`
	// Mode is prefer, require or bypass; empty means the pool's
	// checkout_policy.
	Mode string `json:"mode,omitempty"`
	// WaitMS is how long to wait for a ready instance (0–60000).
	WaitMS int `json:"wait_ms,omitempty"`
}

// CreateSandboxRequest is the body of POST /v1/sandboxes. Zero fields are
// left out, so the server applies its defaults.
type CreateSandboxRequest struct {
	Template    string             `json:"template,omitempty"`
	WarmPool    *WarmPoolRef       `json:"warm_pool,omitempty"`
	VCPUs       float64            `json:"vcpus,omitempty"`
	MemoryMB    int                `json:"memory_mb,omitempty"`
	DiskMB      int                `json:"disk_mb,omitempty"`
	TimeoutMS   int64              `json:"timeout_ms,omitempty"`
	Env         map[string]string  `json:"env,omitempty"`
	Metadata    json.RawMessage    `json:"metadata,omitempty"`
	Labels      map[string]string  `json:"labels,omitempty"`
	Annotations map[string]string  `json:"annotations,omitempty"`
	Selectors   []standby.Selector `json:"selectors,omitempty"`
}

// CreateSandbox checks a sandbox out of a warm pool or cold starts one.
// Under mode require with nothing ready it fails with 503
// warm_pool_unavailable. Pass WithIdempotencyKey to make a retry safe.
func (c *Client) CreateSandbox(ctx context.Context, req CreateSandboxRequest, opts ...RequestOption) (*standby.Sandbox, error) {
	return get[standby.Sandbox](ctx, c, http.MethodPost, "/v1/sandboxes", nil, req, opts...)
}

// SandboxListOptions filters and pages GET /v1/sandboxes.
type SandboxListOptions struct {
	State      string
	Template   string
	WarmPoolID string
	Labels     map[string]string
	PageSize   int
	PageToken  string
}

func (o SandboxListOptions) values() url.Values {
	v := ListOptions{PageSize: o.PageSize, PageToken: o.PageToken, Labels: o.Labels, State: o.State}.values()
	if o.Template != "" {
		v.Set("template", o.Template)
	}
	if o.WarmPoolID != "" {
		v.Set("warm_pool_id", o.WarmPoolID)
	}
	return v
}

// ListSandboxes returns one page of sandboxes.
func (c *Client) ListSandboxes(ctx context.Context, opts SandboxListOptions) ([]standby.Sandbox, string, error) {
	return list[standby.Sandbox](ctx, c, "/v1/sandboxes", opts.values())
}

// AllSandboxes returns every sandbox from opts.PageToken on.
func (c *Client) AllSandboxes(ctx context.Context, opts SandboxListOptions) ([]standby.Sandbox, error) {
	return all(opts.PageToken, func(t string) ([]standby.Sandbox, string, error) {
		opts.PageToken = t
		return c.ListSandboxes(ctx, opts)
	})
}

func sandboxPath(id string) string { return "/v1/sandboxes/" + esc(id) }

// GetSandbox returns a sandbox.
func (c *Client) GetSandbox(ctx context.Context, id string) (*standby.Sandbox, error) {
	return get[standby.Sandbox](ctx, c, http.MethodGet, sandboxPath(id), nil, nil)
}

// DeleteSandbox asks for a sandbox to stop; it moves to stopping, then
// stopped.
func (c *Client) DeleteSandbox(ctx context.Context, id string, opts ...RequestOption) error {
	_, err := c.do(ctx, http.MethodDelete, sandboxPath(id), nil, nil, nil, opts...)
	return err
}

// SetSandboxTimeout makes a sandbox expire timeoutMS from now. It returns
// nil when the server answers 204.
func (c *Client) SetSandboxTimeout(ctx context.Context, id string, timeoutMS int64) (*standby.Sandbox, error) {
	body := map[string]int64{"timeout_ms": timeoutMS}
	return maybe[standby.Sandbox](ctx, c, http.MethodPost, sandboxPath(id)+"/timeout", nil, body)
}

// SetSandboxLabel sets a label on a sandbox.
func (c *Client) SetSandboxLabel(ctx context.Context, id, key, value string) error {
	return c.putValue(ctx, sandboxPath(id)+"/labels/"+esc(key), value)
}

// DeleteSandboxLabel removes a label from a sandbox.
func (c *Client) DeleteSandboxLabel(ctx context.Context, id, key string) error {
	_, err := c.do(ctx, http.MethodDelete, sandboxPath(id)+"/labels/"+esc(key), nil, nil, nil)
	return err
}

// SetSandboxAnnotation sets an annotation on a sandbox.
func (c *Client) SetSandboxAnnotation(ctx context.Context, id, key, value string) error {
	return c.putValue(ctx, sandboxPath(id)+"/annotations/"+esc(key), value)
}

// DeleteSandboxAnnotation removes an annotation from a sandbox.
func (c *Client) DeleteSandboxAnnotation(ctx context.Context, id, key string) error {
	_, err := c.do(ctx, http.MethodDelete, sandboxPath(id)+"/annotations/"+esc(key), nil, nil, nil)
	return err
}

// SandboxLogs copies a sandbox's captured output to w: stdout unless
// opt.Stream is "stderr", the last opt.Tail lines when Tail > 0. With
// opt.Follow it keeps copying until the sandbox stops or ctx ends.
func (c *Client) SandboxLogs(ctx context.Context, id string, opt standby.LogOptions, w io.Writer) error {
	q := url.Values{}
	if opt.Stream != "" {
		q.Set("stream", opt.Stream)
	}
	if opt.Tail > 0 {
		q.Set("tail", strconv.Itoa(opt.Tail))
	}
	if opt.Follow {
		q.Set("follow", "true")
	}
	// Logs are bytes as the instance wrote them, not JSON.
	return c.copyBytes(ctx, sandboxPath(id)+"/logs", q, w)
}
