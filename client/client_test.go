package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/client"
)

// recorded is what the test server saw of one request.
type recorded struct {
	Method string
	Path   string // escaped path
	Query  url.Values
	Header http.Header
	Body   string
}

// newServer starts a server that records each request and answers with
// status and body.
func newServer(t *testing.T, status int, body string, header http.Header) (*httptest.Server, func() []recorded) {
	t.Helper()
	var mu sync.Mutex
	var got []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		mu.Lock()
		got = append(got, recorded{r.Method, r.URL.EscapedPath(), r.URL.Query(), r.Header.Clone(), string(b)})
		mu.Unlock()
		for k, vs := range header {
			w.Header()[k] = vs
		}
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), got...)
	}
}

// sameJSON reports whether two JSON texts are equal as values.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("bad JSON %q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("bad JSON %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestEndpoints(t *testing.T) {
	ctx := context.Background()
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	poolJSON := `{"id":"twp_1","name":"p","template_ref":"echo","min_ready":3,"status":{"ready":2,"warming":1},"created_at":"2025-01-02T03:04:05Z","track_tag":null}`
	pool := &standby.WarmPool{ID: "twp_1", Name: "p", TemplateRef: "echo", MinReady: 3, Status: standby.WarmPoolStatus{Ready: 2, Warming: 1}, CreatedAt: ts}
	sbJSON := `{"id":"sb_1","template":"echo","state":"running","address":"127.0.0.1","ports":{"http":41234},"warm_pool_checkout":{"source":"warm_pool","hit":true,"id":"twp_1","mode":"require"}}`
	sb := &standby.Sandbox{ID: "sb_1", Template: "echo", State: "running", Address: "127.0.0.1", Ports: map[string]int{"http": 41234},
		WarmPoolCheckout: standby.WarmPoolCheckout{Source: "warm_pool", Hit: true, ID: "twp_1", Mode: "require"}}
	page := func(items, next string) string {
		return fmt.Sprintf(`{"items":[%s],"next_page_token":%s}`, items, next)
	}
	lr := func(items any, next string, err error) (any, error) {
		return []any{items, next}, err
	}

	tests := []struct {
		name     string
		call     func(c *client.Client) (any, error)
		method   string
		path     string
		query    url.Values
		wantBody string // JSON; "" means no body
		status   int
		resp     string
		want     any
	}{
		{
			name:   "health",
			call:   func(c *client.Client) (any, error) { return nil, c.Health(ctx) },
			method: "GET", path: "/healthz", status: 200, resp: `{"status":"ok"}`,
		},
		{
			name:   "create project",
			call:   func(c *client.Client) (any, error) { return c.CreateProject(ctx, "team-a") },
			method: "POST", path: "/v1/projects", wantBody: `{"name":"team-a"}`,
			status: 201, resp: `{"id":"prj_1","name":"team-a","version":1}`,
			want: &standby.Project{ID: "prj_1", Name: "team-a", Version: 1},
		},
		{
			name: "list projects",
			call: func(c *client.Client) (any, error) {
				return lr(c.ListProjects(ctx, client.ListOptions{PageSize: 2, PageToken: "tok"}))
			},
			method: "GET", path: "/v1/projects", query: url.Values{"page_size": {"2"}, "page_token": {"tok"}},
			status: 200, resp: page(`{"id":"prj_1"},{"id":"prj_2"}`, `"n2"`),
			want: []any{[]standby.Project{{ID: "prj_1"}, {ID: "prj_2"}}, "n2"},
		},
		{
			name:   "get project",
			call:   func(c *client.Client) (any, error) { return c.GetProject(ctx, "prj_1") },
			method: "GET", path: "/v1/projects/prj_1", status: 200, resp: `{"id":"prj_1"}`,
			want: &standby.Project{ID: "prj_1"},
		},
		{
			name: "update project",
			call: func(c *client.Client) (any, error) {
				return c.UpdateProject(ctx, "prj_1", map[string]any{"quotas": map[string]any{"max_sandboxes": 5, "max_vcpus": nil}})
			},
			method: "PATCH", path: "/v1/projects/prj_1", wantBody: `{"quotas":{"max_sandboxes":5,"max_vcpus":null}}`,
			status: 200, resp: `{"id":"prj_1","quotas":{"max_sandboxes":5}}`,
			want: &standby.Project{ID: "prj_1", Quotas: standby.Quotas{MaxSandboxes: standby.Ptr(5)}},
		},
		{
			name:   "create api key",
			call:   func(c *client.Client) (any, error) { return c.CreateAPIKey(ctx, "prj_1", "ci", "developer") },
			method: "POST", path: "/v1/projects/prj_1/api-keys", wantBody: `{"name":"ci","role":"developer"}`,
			status: 201, resp: `{"id":"key_1","project_id":"prj_1","name":"ci","role":"developer","prefix":"sbk_ab","secret":"sbk_abc"}`,
			want: &standby.APIKey{ID: "key_1", ProjectID: "prj_1", Name: "ci", Role: "developer", Prefix: "sbk_ab", Secret: "sbk_abc"},
		},
		{
			name:   "list api keys",
			call:   func(c *client.Client) (any, error) { return lr(c.ListAPIKeys(ctx, "prj_1", client.ListOptions{})) },
			method: "GET", path: "/v1/projects/prj_1/api-keys",
			status: 200, resp: page(`{"id":"key_1"}`, "null"),
			want: []any{[]standby.APIKey{{ID: "key_1"}}, ""},
		},
		{
			name:   "revoke api key",
			call:   func(c *client.Client) (any, error) { return nil, c.RevokeAPIKey(ctx, "key_1") },
			method: "DELETE", path: "/v1/api-keys/key_1", status: 204,
		},
		{
			name: "create template",
			call: func(c *client.Client) (any, error) {
				return c.CreateTemplate(ctx, client.CreateTemplateRequest{Name: "py", Labels: map[string]string{"team": "a"}})
			},
			method: "POST", path: "/v1/templates", wantBody: `{"name":"py","labels":{"team":"a"}}`,
			status: 201, resp: `{"id":"tpl_1","name":"py","labels":{"team":"a"},"tags":{}}`,
			want: &standby.Template{ID: "tpl_1", Name: "py", Labels: map[string]string{"team": "a"}, Tags: map[string]string{}},
		},
		{
			name: "list templates with labels",
			call: func(c *client.Client) (any, error) {
				return lr(c.ListTemplates(ctx, client.ListOptions{Labels: map[string]string{"b": "2", "a": "1"}}))
			},
			method: "GET", path: "/v1/templates", query: url.Values{"label": {"a=1", "b=2"}},
			status: 200, resp: `{"items":[],"next_page_token":null}`,
			want: []any{[]standby.Template{}, ""},
		},
		{
			name:   "get template escapes its name",
			call:   func(c *client.Client) (any, error) { return c.GetTemplate(ctx, "a/b") },
			method: "GET", path: "/v1/templates/a%2Fb", status: 200, resp: `{"name":"a/b"}`,
			want: &standby.Template{Name: "a/b"},
		},
		{
			name:   "delete template",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteTemplate(ctx, "py") },
			method: "DELETE", path: "/v1/templates/py", status: 204,
		},
		{
			name: "create build",
			call: func(c *client.Client) (any, error) {
				return c.CreateBuild(ctx, "py", client.BuildRequest{
					StartCmd:             []string{"python3", "-m", "http.server", "${PORT}"},
					Ports:                []standby.Port{{Name: "http"}},
					ReadinessHealthCheck: &standby.HealthCheck{Type: "http", Data: standby.HealthCheckData{Endpoint: "/healthz"}},
					Resources:            &standby.Resources{VCPUs: 0.5, MemoryMB: 256, DiskMB: 512},
					Tags:                 []string{"stable"},
				})
			},
			method: "POST", path: "/v1/templates/py/builds",
			wantBody: `{"start_cmd":["python3","-m","http.server","${PORT}"],"ports":[{"name":"http"}],
				"readiness_health_check":{"type":"http","data":{"timeout":0,"invocation_timeout":0,"interval":0,"endpoint":"/healthz"}},
				"resources":{"vcpus":0.5,"memory_mb":256,"disk_mb":512},"tags":["stable"]}`,
			status: 201, resp: `{"id":"tb_1","template":"py","number":1,"status":"ready","tags":["latest","stable"]}`,
			want: &standby.Build{ID: "tb_1", Template: "py", Number: 1, Status: "ready", Tags: []string{"latest", "stable"}},
		},
		{
			name: "list builds",
			call: func(c *client.Client) (any, error) {
				return lr(c.ListBuilds(ctx, "py", client.ListOptions{PageSize: 1}))
			},
			method: "GET", path: "/v1/templates/py/builds", query: url.Values{"page_size": {"1"}},
			status: 200, resp: page(`{"id":"tb_2"}`, `"x"`),
			want: []any{[]standby.Build{{ID: "tb_2"}}, "x"},
		},
		{
			name:   "get build",
			call:   func(c *client.Client) (any, error) { return c.GetBuild(ctx, "py", "tb_1") },
			method: "GET", path: "/v1/templates/py/builds/tb_1", status: 200, resp: `{"id":"tb_1"}`,
			want: &standby.Build{ID: "tb_1"},
		},
		{
			name:   "set tag",
			call:   func(c *client.Client) (any, error) { return c.SetTag(ctx, "py", "stable", "tb_1") },
			method: "PUT", path: "/v1/templates/py/tags/stable", wantBody: `{"build_id":"tb_1"}`,
			status: 200, resp: `{"id":"tb_1","tags":["latest","stable"]}`,
			want: &standby.Build{ID: "tb_1", Tags: []string{"latest", "stable"}},
		},
		{
			name: "create warm pool sends only the fields set",
			call: func(c *client.Client) (any, error) {
				return c.CreateWarmPool(ctx, client.CreateWarmPoolRequest{
					Name: "p", TemplateRef: "echo", MinReady: standby.Ptr(3), MaxReady: standby.Ptr(0),
					Labels: map[string]string{"region": "eu"}, Metadata: json.RawMessage(`{"a":1}`),
				})
			},
			method: "POST", path: "/v1/template-warm-pools",
			wantBody: `{"name":"p","template_ref":"echo","min_ready":3,"max_ready":0,"labels":{"region":"eu"},"metadata":{"a":1}}`,
			status:   201, resp: poolJSON, want: pool,
		},
		{
			name: "list warm pools",
			call: func(c *client.Client) (any, error) {
				return lr(c.ListWarmPools(ctx, client.ListOptions{Labels: map[string]string{"region": "eu"}}))
			},
			method: "GET", path: "/v1/template-warm-pools", query: url.Values{"label": {"region=eu"}},
			status: 200, resp: page(poolJSON, "null"), want: []any{[]standby.WarmPool{*pool}, ""},
		},
		{
			name:   "get warm pool",
			call:   func(c *client.Client) (any, error) { return c.GetWarmPool(ctx, "twp_1") },
			method: "GET", path: "/v1/template-warm-pools/twp_1", status: 200, resp: poolJSON, want: pool,
		},
		{
			name: "update warm pool",
			call: func(c *client.Client) (any, error) {
				return c.UpdateWarmPool(ctx, "twp_1", map[string]any{"min_ready": 3, "track_tag": nil}, "")
			},
			method: "PATCH", path: "/v1/template-warm-pools/twp_1", wantBody: `{"min_ready":3,"track_tag":null}`,
			status: 200, resp: poolJSON, want: pool,
		},
		{
			name: "update warm pool answered 204",
			call: func(c *client.Client) (any, error) {
				p, err := c.UpdateWarmPool(ctx, "twp_1", map[string]any{"min_ready": 1}, "4")
				return p == nil, err
			},
			method: "PATCH", path: "/v1/template-warm-pools/twp_1", wantBody: `{"min_ready":1}`,
			status: 204, want: true,
		},
		{
			name:   "delete warm pool",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteWarmPool(ctx, "twp_1", false) },
			method: "DELETE", path: "/v1/template-warm-pools/twp_1", status: 204,
		},
		{
			name:   "force delete warm pool",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteWarmPool(ctx, "twp_1", true) },
			method: "DELETE", path: "/v1/template-warm-pools/twp_1", query: url.Values{"force_delete": {"true"}},
			status: 200, resp: poolJSON,
		},
		{
			name:   "warm pool status, bare counts",
			call:   func(c *client.Client) (any, error) { return c.WarmPoolStatus(ctx, "twp_1") },
			method: "GET", path: "/v1/template-warm-pools/twp_1/status", status: 200,
			resp: `{"target":3,"ready":2,"warming":1}`,
			want: &standby.WarmPoolStatus{Target: 3, Ready: 2, Warming: 1},
		},
		{
			name:   "warm pool status, wrapped",
			call:   func(c *client.Client) (any, error) { return c.WarmPoolStatus(ctx, "twp_1") },
			method: "GET", path: "/v1/template-warm-pools/twp_1/status", status: 200,
			resp: `{"id":"twp_1","status":{"target":3,"ready":3}}`,
			want: &standby.WarmPoolStatus{Target: 3, Ready: 3},
		},
		{
			name:   "enable",
			call:   func(c *client.Client) (any, error) { return c.EnableWarmPool(ctx, "twp_1") },
			method: "POST", path: "/v1/template-warm-pools/twp_1/enable", status: 200, resp: poolJSON, want: pool,
		},
		{
			name:   "disable",
			call:   func(c *client.Client) (any, error) { return c.DisableWarmPool(ctx, "twp_1") },
			method: "POST", path: "/v1/template-warm-pools/twp_1/disable", status: 200, resp: poolJSON, want: pool,
		},
		{
			name:   "drain",
			call:   func(c *client.Client) (any, error) { return c.DrainWarmPool(ctx, "twp_1") },
			method: "POST", path: "/v1/template-warm-pools/twp_1/drain", status: 200, resp: poolJSON, want: pool,
		},
		{
			name: "reconcile answered 204",
			call: func(c *client.Client) (any, error) {
				p, err := c.ReconcileWarmPool(ctx, "twp_1")
				return p == nil, err
			},
			method: "POST", path: "/v1/template-warm-pools/twp_1/reconcile", status: 204, want: true,
		},
		{
			name: "list instances by state",
			call: func(c *client.Client) (any, error) {
				return lr(c.ListInstances(ctx, "twp_1", client.ListOptions{State: "ready"}))
			},
			method: "GET", path: "/v1/template-warm-pools/twp_1/instances", query: url.Values{"state": {"ready"}},
			status: 200, resp: page(`{"id":"inst_1","state":"ready","sandbox_id":null}`, "null"),
			want: []any{[]standby.Instance{{ID: "inst_1", State: "ready"}}, ""},
		},
		{
			name:   "get instance",
			call:   func(c *client.Client) (any, error) { return c.GetInstance(ctx, "twp_1", "inst_1") },
			method: "GET", path: "/v1/template-warm-pools/twp_1/instances/inst_1", status: 200,
			resp: `{"id":"inst_1","sandbox_id":"sb_1"}`, want: &standby.Instance{ID: "inst_1", SandboxID: standby.Ptr("sb_1")},
		},
		{
			name: "set instance label",
			call: func(c *client.Client) (any, error) {
				return nil, c.SetInstanceLabel(ctx, "twp_1", "inst_1", "map", "de_dust")
			},
			method: "PUT", path: "/v1/template-warm-pools/twp_1/instances/inst_1/labels/map", wantBody: `{"value":"de_dust"}`,
			status: 200, resp: `{}`,
		},
		{
			name:   "delete instance label",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteInstanceLabel(ctx, "twp_1", "inst_1", "map") },
			method: "DELETE", path: "/v1/template-warm-pools/twp_1/instances/inst_1/labels/map", status: 204,
		},
		{
			name: "set instance annotation",
			call: func(c *client.Client) (any, error) {
				return nil, c.SetInstanceAnnotation(ctx, "twp_1", "inst_1", "note", "free text")
			},
			method: "PUT", path: "/v1/template-warm-pools/twp_1/instances/inst_1/annotations/note", wantBody: `{"value":"free text"}`,
			status: 204,
		},
		{
			name: "delete instance annotation",
			call: func(c *client.Client) (any, error) {
				return nil, c.DeleteInstanceAnnotation(ctx, "twp_1", "inst_1", "note")
			},
			method: "DELETE", path: "/v1/template-warm-pools/twp_1/instances/inst_1/annotations/note", status: 204,
		},
		{
			name:   "force delete instance",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteInstance(ctx, "twp_1", "inst_1", true) },
			method: "DELETE", path: "/v1/template-warm-pools/twp_1/instances/inst_1", query: url.Values{"force_delete": {"true"}},
			status: 204,
		},
		{
			name: "create sandbox",
			call: func(c *client.Client) (any, error) {
				return c.CreateSandbox(ctx, client.CreateSandboxRequest{
					Template:  "echo",
					WarmPool:  &client.WarmPoolRef{ID: "twp_1", Mode: "require", WaitMS: 500},
					TimeoutMS: 60000,
					Metadata:  json.RawMessage(`{"match":"m1"}`),
					Labels:    map[string]string{"user": "u1"},
					Selectors: []standby.Selector{{Labels: map[string]string{"map": "a", "mode": "b"}}, {Labels: map[string]string{}}},
				})
			},
			method: "POST", path: "/v1/sandboxes",
			wantBody: `{"template":"echo","warm_pool":{"id":"twp_1","mode":"require","wait_ms":500},"timeout_ms":60000,
				"metadata":{"match":"m1"},"labels":{"user":"u1"},"selectors":[{"labels":{"map":"a","mode":"b"}},{"labels":{}}]}`,
			status: 201, resp: sbJSON, want: sb,
		},
		{
			name: "list sandboxes with filters",
			call: func(c *client.Client) (any, error) {
				return lr(c.ListSandboxes(ctx, client.SandboxListOptions{State: "running", Template: "echo", WarmPoolID: "twp_1",
					Labels: map[string]string{"user": "u1"}, PageSize: 10, PageToken: "t"}))
			},
			method: "GET", path: "/v1/sandboxes",
			query:  url.Values{"state": {"running"}, "template": {"echo"}, "warm_pool_id": {"twp_1"}, "label": {"user=u1"}, "page_size": {"10"}, "page_token": {"t"}},
			status: 200, resp: page(sbJSON, "null"), want: []any{[]standby.Sandbox{*sb}, ""},
		},
		{
			name:   "get sandbox",
			call:   func(c *client.Client) (any, error) { return c.GetSandbox(ctx, "sb_1") },
			method: "GET", path: "/v1/sandboxes/sb_1", status: 200, resp: sbJSON, want: sb,
		},
		{
			name:   "delete sandbox",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteSandbox(ctx, "sb_1") },
			method: "DELETE", path: "/v1/sandboxes/sb_1", status: 204,
		},
		{
			name:   "set sandbox timeout",
			call:   func(c *client.Client) (any, error) { return c.SetSandboxTimeout(ctx, "sb_1", 120000) },
			method: "POST", path: "/v1/sandboxes/sb_1/timeout", wantBody: `{"timeout_ms":120000}`,
			status: 200, resp: sbJSON, want: sb,
		},
		{
			name:   "set sandbox label",
			call:   func(c *client.Client) (any, error) { return nil, c.SetSandboxLabel(ctx, "sb_1", "k", "v") },
			method: "PUT", path: "/v1/sandboxes/sb_1/labels/k", wantBody: `{"value":"v"}`, status: 204,
		},
		{
			name:   "delete sandbox label",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteSandboxLabel(ctx, "sb_1", "k") },
			method: "DELETE", path: "/v1/sandboxes/sb_1/labels/k", status: 204,
		},
		{
			name:   "set sandbox annotation",
			call:   func(c *client.Client) (any, error) { return nil, c.SetSandboxAnnotation(ctx, "sb_1", "k", "v v") },
			method: "PUT", path: "/v1/sandboxes/sb_1/annotations/k", wantBody: `{"value":"v v"}`, status: 204,
		},
		{
			name:   "delete sandbox annotation",
			call:   func(c *client.Client) (any, error) { return nil, c.DeleteSandboxAnnotation(ctx, "sb_1", "k") },
			method: "DELETE", path: "/v1/sandboxes/sb_1/annotations/k", status: 204,
		},
		{
			name:   "list hosts",
			call:   func(c *client.Client) (any, error) { return lr(c.ListHosts(ctx, client.ListOptions{})) },
			method: "GET", path: "/v1/hosts", status: 200,
			resp: page(`{"id":"host_1","name":"local","state":"up","capacity":{"vcpus":2,"memory_mb":4096,"disk_mb":1000}}`, "null"),
			want: []any{[]standby.Host{{ID: "host_1", Name: "local", State: "up", Capacity: standby.Resources{VCPUs: 2, MemoryMB: 4096, DiskMB: 1000}}}, ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, requests := newServer(t, tt.status, tt.resp, nil)
			c := client.New(srv.URL+"/", "sbk_test")
			got, err := tt.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("result:\n got %#v\nwant %#v", got, tt.want)
			}
			reqs := requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != tt.method || r.Path != tt.path {
				t.Errorf("request %s %s, want %s %s", r.Method, r.Path, tt.method, tt.path)
			}
			wantQuery := tt.query
			if wantQuery == nil {
				wantQuery = url.Values{}
			}
			if !reflect.DeepEqual(r.Query, wantQuery) {
				t.Errorf("query %v, want %v", r.Query, wantQuery)
			}
			if tt.wantBody == "" {
				if r.Body != "" {
					t.Errorf("body %q, want none", r.Body)
				}
			} else {
				if !sameJSON(t, r.Body, tt.wantBody) {
					t.Errorf("body %s, want %s", r.Body, tt.wantBody)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
			}
			if a := r.Header.Get("Authorization"); a != "Bearer sbk_test" {
				t.Errorf("Authorization %q", a)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		opts []client.Option
		call func(c *client.Client) error
		want map[string]string // header → value ("" means absent)
	}{
		{
			name: "project and idempotency key",
			opts: []client.Option{client.WithProject("prj_2")},
			call: func(c *client.Client) error {
				_, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{Template: "echo"}, client.WithIdempotencyKey("k-1"))
				return err
			},
			want: map[string]string{"Standby-Project": "prj_2", "Idempotency-Key": "k-1", "If-Match": ""},
		},
		{
			name: "no project, no idempotency key",
			call: func(c *client.Client) error {
				_, err := c.CreateSandbox(ctx, client.CreateSandboxRequest{Template: "echo"})
				return err
			},
			want: map[string]string{"Standby-Project": "", "Idempotency-Key": ""},
		},
		{
			name: "if-match from a bare version is quoted",
			call: func(c *client.Client) error {
				_, err := c.UpdateWarmPool(ctx, "twp_1", map[string]any{"min_ready": 1}, "7")
				return err
			},
			want: map[string]string{"If-Match": `"7"`},
		},
		{
			name: "if-match from an etag is sent as is",
			call: func(c *client.Client) error {
				_, err := c.DrainWarmPool(ctx, "twp_1", client.WithIfMatch(`"8"`))
				return err
			},
			want: map[string]string{"If-Match": `"8"`},
		},
		{
			name: "empty if-match is not sent",
			call: func(c *client.Client) error {
				_, err := c.UpdateWarmPool(ctx, "twp_1", map[string]any{"min_ready": 1}, "")
				return err
			},
			want: map[string]string{"If-Match": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, requests := newServer(t, 200, `{"id":"x"}`, nil)
			c := client.New(srv.URL, "sbk_test", append(tt.opts, client.WithHTTPClient(srv.Client()))...)
			if err := tt.call(c); err != nil {
				t.Fatal(err)
			}
			h := requests()[0].Header
			for k, v := range tt.want {
				if got := h.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		header     http.Header
		wantErrors []client.ErrorEntry
		wantCode   string
		wantText   string
		wantRetry  time.Duration
	}{
		{
			name:   "validation with one entry per field",
			status: 422,
			body: `{"errors":[{"code":"validation_failed","title":"Unprocessable Entity","detail":"min_ready must be >= 0","field":"min_ready"},
				{"code":"validation_failed","title":"Unprocessable Entity","detail":"must be 1-160 characters","field":"name"}]}`,
			wantErrors: []client.ErrorEntry{
				{Code: "validation_failed", Title: "Unprocessable Entity", Detail: "min_ready must be >= 0", Field: "min_ready"},
				{Code: "validation_failed", Title: "Unprocessable Entity", Detail: "must be 1-160 characters", Field: "name"},
			},
			wantCode: standby.EValidation,
			wantText: "min_ready must be >= 0 (field: min_ready); must be 1-160 characters (field: name)",
		},
		{
			name:       "not found",
			status:     404,
			body:       `{"errors":[{"code":"not_found","title":"Not Found","detail":"warm pool twp_x not found"}]}`,
			wantErrors: []client.ErrorEntry{{Code: "not_found", Title: "Not Found", Detail: "warm pool twp_x not found"}},
			wantCode:   standby.ENotFound,
			wantText:   "warm pool twp_x not found",
		},
		{
			name:       "unavailable with retry-after",
			status:     503,
			body:       `{"errors":[{"code":"warm_pool_unavailable","title":"Service Unavailable","detail":"no ready instance"}]}`,
			header:     http.Header{"Retry-After": {"2"}},
			wantErrors: []client.ErrorEntry{{Code: "warm_pool_unavailable", Title: "Service Unavailable", Detail: "no ready instance"}},
			wantCode:   standby.EWarmPoolUnavailable,
			wantText:   "no ready instance",
			wantRetry:  2 * time.Second,
		},
		{
			name:       "not an envelope",
			status:     502,
			body:       "bad gateway\n",
			wantErrors: []client.ErrorEntry{{Title: "Bad Gateway", Detail: "bad gateway"}},
			wantText:   "bad gateway",
		},
		{
			name:       "no body",
			status:     500,
			wantErrors: []client.ErrorEntry{{Title: "Internal Server Error", Detail: "HTTP 500 Internal Server Error"}},
			wantText:   "HTTP 500 Internal Server Error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := newServer(t, tt.status, tt.body, tt.header)
			c := client.New(srv.URL, "k")
			_, err := c.GetWarmPool(context.Background(), "twp_x")
			var ae *client.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %v (%T), want *client.APIError", err, err)
			}
			if ae.Status != tt.status {
				t.Errorf("Status %d, want %d", ae.Status, tt.status)
			}
			if !reflect.DeepEqual(ae.Errors, tt.wantErrors) {
				t.Errorf("Errors %+v, want %+v", ae.Errors, tt.wantErrors)
			}
			if ae.Code() != tt.wantCode {
				t.Errorf("Code() %q, want %q", ae.Code(), tt.wantCode)
			}
			if err.Error() != tt.wantText {
				t.Errorf("Error() %q, want %q", err.Error(), tt.wantText)
			}
			if ae.RetryAfter != tt.wantRetry {
				t.Errorf("RetryAfter %v, want %v", ae.RetryAfter, tt.wantRetry)
			}
			if tt.wantCode != "" && !standby.IsCode(err, tt.wantCode) {
				t.Errorf("standby.IsCode(err, %q) is false", tt.wantCode)
			}
		})
	}
}

func TestEmptyBodyWhereOneIsNeeded(t *testing.T) {
	srv, _ := newServer(t, 204, "", nil)
	_, err := client.New(srv.URL, "k").GetSandbox(context.Background(), "sb_1")
	if err == nil || !strings.Contains(err.Error(), "empty response body") {
		t.Fatalf("error %v, want empty response body", err)
	}
}

func TestBadJSONResponse(t *testing.T) {
	srv, _ := newServer(t, 200, `{"id":`, nil)
	_, err := client.New(srv.URL, "k").GetSandbox(context.Background(), "sb_1")
	if err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Fatalf("error %v, want a decode error", err)
	}
}

func TestAllFollowsPages(t *testing.T) {
	pages := map[string]string{
		"":   `{"items":[{"id":"sb_1"},{"id":"sb_2"}],"next_page_token":"p2"}`,
		"p2": `{"items":[{"id":"sb_3"}],"next_page_token":"p3"}`,
		"p3": `{"items":[],"next_page_token":null}`,
	}
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("page_token")
		mu.Lock()
		seen = append(seen, tok+"|"+r.URL.Query().Get("state"))
		mu.Unlock()
		body, ok := pages[tok]
		if !ok {
			w.WriteHeader(400)
			return
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	got, err := client.New(srv.URL, "k").AllSandboxes(context.Background(), client.SandboxListOptions{State: "running"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	if want := []string{"sb_1", "sb_2", "sb_3"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("ids %v, want %v", ids, want)
	}
	if want := []string{"|running", "p2|running", "p3|running"}; !reflect.DeepEqual(seen, want) {
		t.Errorf("requests %v, want %v", seen, want)
	}
}

func TestAllStopsOnARepeatedToken(t *testing.T) {
	srv, _ := newServer(t, 200, `{"items":[{"id":"twp_1"}],"next_page_token":"same"}`, nil)
	_, err := client.New(srv.URL, "k").AllWarmPools(context.Background(), client.ListOptions{PageToken: "same"})
	if err == nil || !strings.Contains(err.Error(), "again") {
		t.Fatalf("error %v, want a repeated-token error", err)
	}
}

func TestSandboxLogs(t *testing.T) {
	srv, requests := newServer(t, 200, "line 1\nline 2\n", nil)
	var out strings.Builder
	err := client.New(srv.URL, "k").SandboxLogs(context.Background(), "sb_1", standby.LogOptions{Stream: "stderr", Tail: 5}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "line 1\nline 2\n" {
		t.Errorf("logs %q", out.String())
	}
	r := requests()[0]
	if r.Path != "/v1/sandboxes/sb_1/logs" || !reflect.DeepEqual(r.Query, url.Values{"stream": {"stderr"}, "tail": {"5"}}) {
		t.Errorf("request %s?%s", r.Path, r.Query.Encode())
	}
}

// lineSignal is a writer that reports the first write on a channel.
type lineSignal struct {
	mu   sync.Mutex
	buf  strings.Builder
	once sync.Once
	got  chan struct{}
}

func (w *lineSignal) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.once.Do(func() { close(w.got) })
	return len(p), nil
}

func TestSandboxLogsFollowStreamsUntilCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("follow") != "true" {
			t.Errorf("follow not sent: %s", r.URL.RawQuery)
		}
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done() // a follow never ends on its own while the sandbox runs
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &lineSignal{got: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		done <- client.New(srv.URL, "k").SandboxLogs(ctx, "sb_1", standby.LogOptions{Follow: true}, w)
	}()
	select {
	case <-w.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no log line arrived before the stream ended")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SandboxLogs did not return after cancel")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.String() != "first\n" {
		t.Errorf("logs %q", w.buf.String())
	}
}

func TestLogsErrorIsAPIError(t *testing.T) {
	srv, _ := newServer(t, 404, `{"errors":[{"code":"not_found","title":"Not Found","detail":"sandbox sb_9 not found"}]}`, nil)
	var out strings.Builder
	err := client.New(srv.URL, "k").SandboxLogs(context.Background(), "sb_9", standby.LogOptions{}, &out)
	if !standby.IsCode(err, standby.ENotFound) {
		t.Fatalf("error %v, want not_found", err)
	}
	if out.Len() != 0 {
		t.Errorf("error body written to the log writer: %q", out.String())
	}
}
