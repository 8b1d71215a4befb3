package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/standbyhq/standby"
)

// CreateWarmPoolRequest is the body of POST /v1/template-warm-pools (seed
// 000). Nil and empty fields are left out, so the server applies its
// defaults to them.
type CreateWarmPoolRequest struct {
	Name               string             `json:"name,omitempty"`
	TemplateRef        string             `json:"template_ref,omitempty"`
	Resources          *standby.Resources `json:"resources,omitempty"`
	MinReady           *int               `json:"min_ready,omitempty"`
	MaxReady           *int               `json:"max_ready,omitempty"`
	IdleTimeoutSeconds *int               `json:"idle_timeout_seconds,omitempty"`
	StaleAfterSeconds  *int               `json:"stale_after_seconds,omitempty"`
	CheckoutPolicy     string             `json:"checkout_policy,omitempty"`
	VersionPolicy      string             `json:"version_policy,omitempty"`
	TrackTag           *string            `json:"track_tag,omitempty"`
	HostPoolID         *string            `json:"host_pool_id,omitempty"`
	CellID             *string            `json:"cell_id,omitempty"`
	Labels             map[string]string  `json:"labels,omitempty"`
	Metadata           json.RawMessage    `json:"metadata,omitempty"`
}

const poolsPath = "/v1/template-warm-pools"

func poolPath(id string) string { return poolsPath + "/" + esc(id) }

// CreateWarmPool creates a warm pool.
func (c *Client) CreateWarmPool(ctx context.Context, req CreateWarmPoolRequest, opts ...RequestOption) (*standby.WarmPool, error) {
	return get[standby.WarmPool](ctx, c, http.MethodPost, poolsPath, nil, req, opts...)
}

// ListWarmPools returns one page of pools (deleted ones are not listed).
func (c *Client) ListWarmPools(ctx context.Context, opts ListOptions) ([]standby.WarmPool, string, error) {
	return list[standby.WarmPool](ctx, c, poolsPath, opts.values())
}

// AllWarmPools returns every pool from opts.PageToken on.
func (c *Client) AllWarmPools(ctx context.Context, opts ListOptions) ([]standby.WarmPool, error) {
	return all(opts.PageToken, func(t string) ([]standby.WarmPool, string, error) {
		opts.PageToken = t
		return c.ListWarmPools(ctx, opts)
	})
}

// GetWarmPool returns a pool, deleted or not.
func (c *Client) GetWarmPool(ctx context.Context, id string) (*standby.WarmPool, error) {
	return get[standby.WarmPool](ctx, c, http.MethodGet, poolPath(id), nil, nil)
}

// UpdateWarmPool merge-patches a pool: each key present replaces that
// top-level field whole, a nil value clears a nullable one. ifMatch, when
// not empty, is the version the pool must still have (412 otherwise). It
// returns nil when the server answers 204.
func (c *Client) UpdateWarmPool(ctx context.Context, id string, patch map[string]any, ifMatch string) (*standby.WarmPool, error) {
	return maybe[standby.WarmPool](ctx, c, http.MethodPatch, poolPath(id), nil, patch, WithIfMatch(ifMatch))
}

// DeleteWarmPool deletes a pool: its unclaimed instances are stopped;
// with force its running sandboxes are stopped too.
func (c *Client) DeleteWarmPool(ctx context.Context, id string, force bool, opts ...RequestOption) error {
	_, err := c.do(ctx, http.MethodDelete, poolPath(id), forceQuery(force), nil, nil, opts...)
	return err
}

func forceQuery(force bool) url.Values {
	if !force {
		return nil
	}
	return url.Values{"force_delete": {"true"}}
}

// WarmPoolStatus returns GET …/{id}/status. The server may answer with the
// status counts alone or with an object holding them under "status"; both
// are accepted.
func (c *Client) WarmPoolStatus(ctx context.Context, id string) (*standby.WarmPoolStatus, error) {
	v, err := get[struct {
		standby.WarmPoolStatus
		Status *standby.WarmPoolStatus `json:"status"`
	}](ctx, c, http.MethodGet, poolPath(id)+"/status", nil, nil)
	if err != nil {
		return nil, err
	}
	if v.Status != nil {
		return v.Status, nil
	}
	return &v.WarmPoolStatus, nil
}

func (c *Client) poolAction(ctx context.Context, id, action string, opts []RequestOption) (*standby.WarmPool, error) {
	return maybe[standby.WarmPool](ctx, c, http.MethodPost, poolPath(id)+"/"+action, nil, nil, opts...)
}

// EnableWarmPool enables a pool. It returns nil when the server answers 204.
func (c *Client) EnableWarmPool(ctx context.Context, id string, opts ...RequestOption) (*standby.WarmPool, error) {
	return c.poolAction(ctx, id, "enable", opts)
}

// DisableWarmPool disables a pool: ready instances stop, checkouts are
// refused. It returns nil when the server answers 204.
func (c *Client) DisableWarmPool(ctx context.Context, id string, opts ...RequestOption) (*standby.WarmPool, error) {
	return c.poolAction(ctx, id, "disable", opts)
}

// DrainWarmPool drains a pool: no new warming, ready instances stop,
// claimed ones are left alone. It returns nil when the server answers 204.
func (c *Client) DrainWarmPool(ctx context.Context, id string, opts ...RequestOption) (*standby.WarmPool, error) {
	return c.poolAction(ctx, id, "drain", opts)
}

// ReconcileWarmPool asks the controller to look at the pool now. It
// returns nil when the server answers 204.
func (c *Client) ReconcileWarmPool(ctx context.Context, id string, opts ...RequestOption) (*standby.WarmPool, error) {
	return c.poolAction(ctx, id, "reconcile", opts)
}

func instancePath(poolID, iid string) string { return poolPath(poolID) + "/instances/" + esc(iid) }

// ListInstances returns one page of a pool's instances; opts.State filters
// by state.
func (c *Client) ListInstances(ctx context.Context, poolID string, opts ListOptions) ([]standby.Instance, string, error) {
	return list[standby.Instance](ctx, c, poolPath(poolID)+"/instances", opts.values())
}

// AllInstances returns every instance of a pool from opts.PageToken on.
func (c *Client) AllInstances(ctx context.Context, poolID string, opts ListOptions) ([]standby.Instance, error) {
	return all(opts.PageToken, func(t string) ([]standby.Instance, string, error) {
		opts.PageToken = t
		return c.ListInstances(ctx, poolID, opts)
	})
}

// GetInstance returns one instance of a pool.
func (c *Client) GetInstance(ctx context.Context, poolID, iid string) (*standby.Instance, error) {
	return get[standby.Instance](ctx, c, http.MethodGet, instancePath(poolID, iid), nil, nil)
}

// SetInstanceLabel sets a label on an instance, for selectors to match.
func (c *Client) SetInstanceLabel(ctx context.Context, poolID, iid, key, value string) error {
	return c.putValue(ctx, instancePath(poolID, iid)+"/labels/"+esc(key), value)
}

// DeleteInstanceLabel removes a label from an instance.
func (c *Client) DeleteInstanceLabel(ctx context.Context, poolID, iid, key string) error {
	_, err := c.do(ctx, http.MethodDelete, instancePath(poolID, iid)+"/labels/"+esc(key), nil, nil, nil)
	return err
}

// SetInstanceAnnotation sets an annotation on an instance.
func (c *Client) SetInstanceAnnotation(ctx context.Context, poolID, iid, key, value string) error {
	return c.putValue(ctx, instancePath(poolID, iid)+"/annotations/"+esc(key), value)
}

// DeleteInstanceAnnotation removes an annotation from an instance.
func (c *Client) DeleteInstanceAnnotation(ctx context.Context, poolID, iid, key string) error {
	_, err := c.do(ctx, http.MethodDelete, instancePath(poolID, iid)+"/annotations/"+esc(key), nil, nil, nil)
	return err
}

// DeleteInstance stops an instance of a pool (the pool replaces it). A
// claimed instance needs force, which also stops its sandbox.
func (c *Client) DeleteInstance(ctx context.Context, poolID, iid string, force bool) error {
	_, err := c.do(ctx, http.MethodDelete, instancePath(poolID, iid), forceQuery(force), nil, nil)
	return err
}

func (c *Client) putValue(ctx context.Context, path, value string) error {
	_, err := c.do(ctx, http.MethodPut, path, nil, map[string]string{"value": value}, nil)
	return err
}
