package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/standbyhq/standby"
)

// Exec runs a command inside a sandbox and waits for it
// (POST /v1/sandboxes/{id}/exec).
func (c *Client) Exec(ctx context.Context, id string, req standby.ExecRequest) (*standby.ExecResult, error) {
	return get[standby.ExecResult](ctx, c, http.MethodPost, sandboxPath(id)+"/exec", nil, req)
}

// rawBody sends r as the request body, as bytes rather than JSON.
func rawBody(r io.Reader) RequestOption {
	return func(req *http.Request) {
		req.Body = io.NopCloser(r)
		req.Header.Set("Content-Type", "application/octet-stream")
	}
}

// acceptBytes asks for a response of raw bytes.
func acceptBytes(r *http.Request) { r.Header.Set("Accept", "*/*") }

// WriteFile writes r to path inside the sandbox's root
// (PUT /v1/sandboxes/{id}/files?path=).
func (c *Client) WriteFile(ctx context.Context, id, path string, r io.Reader) error {
	resp, err := c.send(ctx, http.MethodPut, sandboxPath(id)+"/files", url.Values{"path": {path}}, nil, []RequestOption{rawBody(r)})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// ReadFile copies the file at path inside the sandbox's root to w
// (GET /v1/sandboxes/{id}/files?path=).
func (c *Client) ReadFile(ctx context.Context, id, path string, w io.Writer) error {
	return c.copyBytes(ctx, sandboxPath(id)+"/files", url.Values{"path": {path}}, w)
}

// ListArtefacts lists a page of a sandbox's artefacts.
func (c *Client) ListArtefacts(ctx context.Context, id string, opts ListOptions) ([]standby.Artefact, string, error) {
	return list[standby.Artefact](ctx, c, sandboxPath(id)+"/artefacts", opts.values())
}

// AllArtefacts lists every artefact of a sandbox, following the pages.
func (c *Client) AllArtefacts(ctx context.Context, id string) ([]standby.Artefact, error) {
	return all("", func(token string) ([]standby.Artefact, string, error) {
		return c.ListArtefacts(ctx, id, ListOptions{PageToken: token})
	})
}

// ArtefactContent copies one artefact of a sandbox to w.
func (c *Client) ArtefactContent(ctx context.Context, id, filePath string, w io.Writer) error {
	return c.copyBytes(ctx, sandboxPath(id)+"/artefacts/content", url.Values{"file_path": {filePath}}, w)
}

// SandboxStats reads a sandbox's usage and quotas.
func (c *Client) SandboxStats(ctx context.Context, id string) (*standby.InstanceStats, error) {
	return get[standby.InstanceStats](ctx, c, http.MethodGet, sandboxPath(id)+"/stats", nil, nil)
}

func (c *Client) copyBytes(ctx context.Context, path string, q url.Values, w io.Writer) error {
	resp, err := c.send(ctx, http.MethodGet, path, q, nil, []RequestOption{acceptBytes})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}
