// Package client is the Go client of the standby HTTP API (SPEC §1–§5, §7).
//
// It speaks the wire format with the root package's types (their JSON tags
// are the wire), turns every non-2xx response into an *APIError, and does
// nothing behind the caller's back: no retries, no caching. The only extra
// is the Idempotency-Key option, so a caller can retry a POST safely itself.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/standbyhq/standby"
)

// ProjectHeader names the project an admin key acts in (SPEC §1).
const ProjectHeader = "Standby-Project"

// Client talks to one standby server with one API key. It is safe for
// concurrent use.
type Client struct {
	base    string
	apiKey  string
	project string
	hc      *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc instead of
// http.DefaultClient (for timeouts, transports, test servers).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithProject makes every request act in project id (header
// Standby-Project), which an admin key may do for any project.
func WithProject(id string) Option {
	return func(c *Client) { c.project = id }
}

// New returns a client of the server at baseURL (e.g.
// "http://127.0.0.1:7070") authenticating with apiKey.
func New(baseURL, apiKey string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), apiKey: apiKey, hc: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c
}

// RequestOption changes one request.
type RequestOption func(*http.Request)

// WithIdempotencyKey sends Idempotency-Key: the server replays the first
// response to a repeated POST with the same key and body (SPEC §1).
func WithIdempotencyKey(key string) RequestOption {
	return func(r *http.Request) { r.Header.Set("Idempotency-Key", key) }
}

// WithIfMatch sends If-Match with a resource version, so the request fails
// with 412 precondition_failed when the resource changed since.
func WithIfMatch(version string) RequestOption {
	return func(r *http.Request) {
		if version != "" {
			r.Header.Set("If-Match", quoteETag(version))
		}
	}
}

// quoteETag accepts a version as a number ("3") or as the ETag the server
// sent ("\"3\"") and returns the ETag form.
func quoteETag(v string) string {
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, `W/"`) {
		return v
	}
	return `"` + v + `"`
}

// ErrorEntry is one entry of the API's error envelope.
type ErrorEntry struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
}

// String returns the detail (else the title, else the code) and the field
// it is about, as in "min_ready must be >= 0 (field: min_ready)".
func (e ErrorEntry) String() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if msg == "" {
		msg = e.Code
	}
	if e.Field != "" {
		msg += " (field: " + e.Field + ")"
	}
	return msg
}

// APIError is a non-2xx response: its status and the entries of its error
// envelope (one per bad field for a 422).
type APIError struct {
	Status int
	Errors []ErrorEntry
	// RetryAfter is the server's Retry-After (503, 429), zero when absent.
	RetryAfter time.Duration
}

// Error joins the entries, each as its detail and field.
func (e *APIError) Error() string {
	if len(e.Errors) == 0 {
		return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	parts := make([]string, len(e.Errors))
	for i, en := range e.Errors {
		parts[i] = en.String()
	}
	return strings.Join(parts, "; ")
}

// Code returns the first entry's code ("" when there is none).
func (e *APIError) Code() string {
	if len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// Unwrap returns the entries as *standby.Error values, so that
// standby.ErrorCode and standby.IsCode work on client errors as they do on
// the server's.
func (e *APIError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, en := range e.Errors {
		errs[i] = &standby.Error{Code: en.Code, Message: en.Detail, Field: en.Field}
	}
	return errs
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 1 << 20

func decodeError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Status: resp.StatusCode}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	var env struct {
		Errors []ErrorEntry `json:"errors"`
	}
	if json.Unmarshal(body, &env) == nil && len(env.Errors) > 0 {
		e.Errors = env.Errors
		return e
	}
	// Not our envelope (a proxy, a crashed server): keep what it said.
	detail := strings.TrimSpace(string(body))
	if len(detail) > 512 {
		detail = detail[:512] + "…"
	}
	e.Errors = []ErrorEntry{{Title: http.StatusText(resp.StatusCode), Detail: detail}}
	if detail == "" {
		e.Errors[0].Detail = fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

// send makes one request and returns the response of a 2xx; any other
// status becomes an *APIError.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body any, opts []RequestOption) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	if c.project != "" {
		req.Header.Set(ProjectHeader, c.project)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// errEmpty is returned when a response that must carry a body has none.
var errEmpty = errors.New("empty response body")

// do makes a request and decodes its JSON body into out (when out is not
// nil). It reports whether a body was decoded: a 204 or an empty body
// leaves out untouched.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any, opts ...RequestOption) (bool, error) {
	resp, err := c.send(ctx, method, path, query, body, opts)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return false, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return true, nil
}

// get fetches one resource; a response without a body is an error.
func get[T any](ctx context.Context, c *Client, method, path string, query url.Values, body any, opts ...RequestOption) (*T, error) {
	v := new(T)
	ok, err := c.do(ctx, method, path, query, body, v, opts...)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", method, path, errEmpty)
	}
	return v, nil
}

// maybe is get for updates and actions, which the server may answer with
// 204 No Content: it returns nil, nil then.
func maybe[T any](ctx context.Context, c *Client, method, path string, query url.Values, body any, opts ...RequestOption) (*T, error) {
	v := new(T)
	ok, err := c.do(ctx, method, path, query, body, v, opts...)
	if err != nil || !ok {
		return nil, err
	}
	return v, nil
}

// ListOptions pages and filters a list. Labels become repeated
// ?label=k=v; State applies where the resource has one (instances).
type ListOptions struct {
	PageSize  int
	PageToken string
	Labels    map[string]string
	State     string
}

func (o ListOptions) values() url.Values {
	v := url.Values{}
	if o.PageSize > 0 {
		v.Set("page_size", strconv.Itoa(o.PageSize))
	}
	if o.PageToken != "" {
		v.Set("page_token", o.PageToken)
	}
	addLabels(v, o.Labels)
	if o.State != "" {
		v.Set("state", o.State)
	}
	return v
}

func addLabels(v url.Values, labels map[string]string) {
	for _, k := range standby.SortedKeys(labels) {
		v.Add("label", k+"="+labels[k])
	}
}

// page is the body of every list response.
type page[T any] struct {
	Items         []T     `json:"items"`
	NextPageToken *string `json:"next_page_token"`
}

func list[T any](ctx context.Context, c *Client, path string, query url.Values) ([]T, string, error) {
	p, err := get[page[T]](ctx, c, http.MethodGet, path, query, nil)
	if err != nil {
		return nil, "", err
	}
	items := p.Items
	if items == nil {
		items = []T{}
	}
	next := ""
	if p.NextPageToken != nil {
		next = *p.NextPageToken
	}
	return items, next, nil
}

// all follows next_page_token from token until the last page.
func all[T any](token string, fetch func(token string) ([]T, string, error)) ([]T, error) {
	out := []T{}
	for {
		items, next, err := fetch(token)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		if next == token {
			return nil, fmt.Errorf("server returned page token %q again", next)
		}
		token = next
	}
}

// esc escapes one path segment.
func esc(s string) string { return url.PathEscape(s) }

// Health checks GET /healthz: nil when the server answers 2xx.
func (c *Client) Health(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/healthz", nil, nil, nil)
	return err
}
