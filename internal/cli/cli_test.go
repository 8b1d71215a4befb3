package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby/client"
	"github.com/standbyhq/standby/internal/cli"
)

// recorded is one request the fake API saw.
type recorded struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   string
}

func (r recorded) String() string { return r.Method + " " + r.Path }

// api is a fake standby API: canned answers by "METHOD /path", every
// request recorded. Anything else is a 404 envelope and a test error.
type api struct {
	t      *testing.T
	mu     sync.Mutex
	reqs   []recorded
	routes map[string]http.HandlerFunc
}

func newAPI(t *testing.T, routes map[string]http.HandlerFunc) *api {
	t.Helper()
	return &api{t: t, routes: routes}
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		a.t.Errorf("read body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	a.mu.Lock()
	a.reqs = append(a.reqs, recorded{r.Method, r.URL.EscapedPath(), r.URL.Query(), r.Header.Clone(), string(b)})
	a.mu.Unlock()
	h, ok := a.routes[r.Method+" "+r.URL.EscapedPath()]
	if !ok {
		a.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		reply(404, `{"errors":[{"code":"not_found","title":"Not Found","detail":"no route"}]}`)(w, r)
		return
	}
	h(w, r)
}

func (a *api) requests() []recorded {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]recorded(nil), a.reqs...)
}

// reply answers with a status and a JSON body.
func reply(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

type result struct {
	stdout, stderr string
	err            error
	reqs           []recorded
}

// run executes the CLI with args against the fake API. env adds to (or,
// with "", removes from) the default environment, which points at the
// server with key sbk_test.
func run(t *testing.T, ctx context.Context, a *api, env map[string]string, args ...string) result {
	t.Helper()
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	vars := map[string]string{"STANDBY_SERVER": srv.URL, "STANDBY_API_KEY": "sbk_test", "STANDBY_DATA_DIR": t.TempDir()}
	for k, v := range env {
		vars[k] = v
	}
	var stdout, stderr bytes.Buffer
	root := cli.NewRootCommand(cli.Options{
		Stdout:       &stdout,
		Stderr:       &stderr,
		Getenv:       func(k string) string { return vars[k] },
		PollInterval: 2e6, // 2ms: pool wait tests poll quickly
	})
	root.SetArgs(args)
	if ctx == nil {
		ctx = context.Background()
	}
	err := root.ExecuteContext(ctx)
	return result{stdout.String(), stderr.String(), err, a.requests()}
}

func sameJSON(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("not JSON: %q: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %q: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

const (
	poolJSON = `{"id":"twp_1","name":"echo-pool","template_ref":"echo","state":"enabled","min_ready":3,"max_ready":3,
		"status":{"target":3,"ready":2,"warming":1},"resources":{"vcpus":1,"memory_mb":512,"disk_mb":1024},
		"resolved_template_build_id":"tb_1","labels":{"region":"eu"},"version":4}`
	sandboxJSON = `{"id":"sb_1","template":"echo","state":"running","address":"127.0.0.1","ports":{"http":41234},
		"expires_at":"2025-01-02T03:09:05Z","warm_pool_checkout":{"source":"warm_pool","hit":true,"id":"twp_1","mode":"require"}}`
)

func TestCommands(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "main.py")
	if err := os.WriteFile(local, []byte("print('hi')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		routes map[string]http.HandlerFunc
		args   []string
		// want is the one request expected: "METHOD /path", its query and
		// JSON body ("" for none).
		want      string
		wantQuery url.Values
		wantBody  string
		// out lists substrings of stdout, in order.
		out []string
	}{
		{
			name:     "template create",
			routes:   map[string]http.HandlerFunc{"POST /v1/templates": reply(201, `{"id":"tpl_1","name":"py","description":"Python","labels":{"team":"a"},"tags":{}}`)},
			args:     []string{"template", "create", "py", "--description", "Python", "--label", "team=a"},
			want:     "POST /v1/templates",
			wantBody: `{"name":"py","description":"Python","labels":{"team":"a"}}`,
			out:      []string{"name", "py", "description", "Python", "labels", "team=a"},
		},
		{
			name:   "template list",
			routes: map[string]http.HandlerFunc{"GET /v1/templates": reply(200, `{"items":[{"name":"echo","builtin":true,"tags":{"latest":"tb_1"}}],"next_page_token":null}`)},
			args:   []string{"template", "list"},
			want:   "GET /v1/templates",
			out:    []string{"NAME", "BUILTIN", "TAGS", "\necho", "true", "latest"},
		},
		{
			name:   "template delete",
			routes: map[string]http.HandlerFunc{"DELETE /v1/templates/py": reply(204, "")},
			args:   []string{"template", "delete", "py"},
			want:   "DELETE /v1/templates/py",
			out:    []string{"deleted template py"},
		},
		{
			name:   "build create with argv after --",
			routes: map[string]http.HandlerFunc{"POST /v1/templates/py/builds": reply(201, `{"id":"tb_2","template":"py","number":2,"status":"ready","tags":["latest","stable"]}`)},
			args: []string{"build", "create", "py", "--port", "http", "--env", "MODE=fast", "--file", "a.txt=hello",
				"--file", "main.py=@" + local, "--readiness", "http:/healthz", "--tag", "stable", "--vcpus", "0.5",
				"--", "python3", "main.py", "${PORT}"},
			want: "POST /v1/templates/py/builds",
			wantBody: `{"start_cmd":["python3","main.py","${PORT}"],"env":{"MODE":"fast"},
				"files":{"a.txt":"hello","main.py":"print('hi')\n"},"ports":[{"name":"http"}],
				"readiness_health_check":{"type":"http","data":{"timeout":0,"invocation_timeout":0,"interval":0,"endpoint":"/healthz"}},
				"resources":{"vcpus":0.5,"memory_mb":0,"disk_mb":0},"tags":["stable"]}`,
			out: []string{"id", "tb_2", "number", "2", "tags", "latest,stable"},
		},
		{
			name:     "build create with a shell command",
			routes:   map[string]http.HandlerFunc{"POST /v1/templates/py/builds": reply(201, `{"id":"tb_3"}`)},
			args:     []string{"build", "create", "py", "--cmd", "python3 -m http.server $PORT", "--port", "http"},
			want:     "POST /v1/templates/py/builds",
			wantBody: `{"start_cmd":["/bin/sh","-c","python3 -m http.server $PORT"],"ports":[{"name":"http"}]}`,
			out:      []string{"tb_3"},
		},
		{
			name:     "build create with --arg",
			routes:   map[string]http.HandlerFunc{"POST /v1/templates/py/builds": reply(201, `{"id":"tb_4"}`)},
			args:     []string{"build", "create", "py", "--arg", "sleep", "--arg", "1000"},
			want:     "POST /v1/templates/py/builds",
			wantBody: `{"start_cmd":["sleep","1000"]}`,
		},
		{
			name:   "build list",
			routes: map[string]http.HandlerFunc{"GET /v1/templates/py/builds": reply(200, `{"items":[{"id":"tb_2","number":2,"status":"ready","start_cmd":["python3","main.py"]}],"next_page_token":null}`)},
			args:   []string{"build", "list", "py"},
			want:   "GET /v1/templates/py/builds",
			out:    []string{"ID", "NUMBER", "STATUS", "tb_2", "2", "ready", "python3 main.py"},
		},
		{
			name:   "build get",
			routes: map[string]http.HandlerFunc{"GET /v1/templates/py/builds/tb_2": reply(200, `{"id":"tb_2","canonical_ref":"py@tb_2"}`)},
			args:   []string{"build", "get", "py", "tb_2"},
			want:   "GET /v1/templates/py/builds/tb_2",
			out:    []string{"canonical_ref", "py@tb_2"},
		},
		{
			name:     "tag set",
			routes:   map[string]http.HandlerFunc{"PUT /v1/templates/py/tags/stable": reply(200, `{"id":"tb_2","tags":["stable"]}`)},
			args:     []string{"tag", "set", "py", "stable", "tb_2"},
			want:     "PUT /v1/templates/py/tags/stable",
			wantBody: `{"build_id":"tb_2"}`,
			out:      []string{"py:stable -> tb_2"},
		},
		{
			name:   "pool create sends only the flags given",
			routes: map[string]http.HandlerFunc{"POST /v1/template-warm-pools": reply(201, poolJSON)},
			args: []string{"pool", "create", "--name", "echo-pool", "--template", "echo", "--min-ready", "3",
				"--label", "region=eu", "--idle-timeout", "5m", "--checkout-policy", "require", "--metadata", `{"owner":"me"}`},
			want: "POST /v1/template-warm-pools",
			wantBody: `{"name":"echo-pool","template_ref":"echo","min_ready":3,"labels":{"region":"eu"},
				"idle_timeout_seconds":300,"checkout_policy":"require","metadata":{"owner":"me"}}`,
			out: []string{"id", "twp_1", "ready", "2 (min 3, max 3, target 3)", "labels", "region=eu"},
		},
		{
			name:   "pool create with version policy and zero min-ready",
			routes: map[string]http.HandlerFunc{"POST /v1/template-warm-pools": reply(201, poolJSON)},
			args: []string{"pool", "create", "--name", "p", "--template", "echo:stable", "--min-ready", "0", "--max-ready", "4",
				"--version-policy", "track_tag", "--track-tag", "stable", "--stale-after", "3600", "--memory-mb", "256"},
			want: "POST /v1/template-warm-pools",
			wantBody: `{"name":"p","template_ref":"echo:stable","min_ready":0,"max_ready":4,"version_policy":"track_tag",
				"track_tag":"stable","stale_after_seconds":3600,"resources":{"vcpus":0,"memory_mb":256,"disk_mb":0}}`,
		},
		{
			name:   "pool list",
			routes: map[string]http.HandlerFunc{"GET /v1/template-warm-pools": reply(200, `{"items":[`+poolJSON+`],"next_page_token":null}`)},
			args:   []string{"pool", "list", "--label", "region=eu"},
			want:   "GET /v1/template-warm-pools", wantQuery: url.Values{"label": {"region=eu"}},
			out: []string{"ID", "NAME", "TEMPLATE", "STATE", "READY", "WARMING", "twp_1", "echo-pool", "echo", "enabled", "2/3", "1", "tb_1"},
		},
		{
			name:     "pool update patches only the flags given",
			routes:   map[string]http.HandlerFunc{"PATCH /v1/template-warm-pools/twp_1": reply(200, poolJSON)},
			args:     []string{"pool", "update", "twp_1", "--min-ready", "5", "--max-ready", "8", "--track-tag", "", "--label", "a=b"},
			want:     "PATCH /v1/template-warm-pools/twp_1",
			wantBody: `{"min_ready":5,"max_ready":8,"track_tag":null,"labels":{"a":"b"}}`,
			out:      []string{"twp_1"},
		},
		{
			name:     "pool update clears labels",
			routes:   map[string]http.HandlerFunc{"PATCH /v1/template-warm-pools/twp_1": reply(200, poolJSON)},
			args:     []string{"pool", "update", "twp_1", "--clear-labels", "--template", "echo@tb_9"},
			want:     "PATCH /v1/template-warm-pools/twp_1",
			wantBody: `{"labels":{},"template_ref":"echo@tb_9"}`,
		},
		{
			name:      "pool delete --force",
			routes:    map[string]http.HandlerFunc{"DELETE /v1/template-warm-pools/twp_1": reply(204, "")},
			args:      []string{"pool", "delete", "twp_1", "--force"},
			want:      "DELETE /v1/template-warm-pools/twp_1",
			wantQuery: url.Values{"force_delete": {"true"}},
			out:       []string{"deleted pool twp_1"},
		},
		{
			name:   "pool enable",
			routes: map[string]http.HandlerFunc{"POST /v1/template-warm-pools/twp_1/enable": reply(200, poolJSON)},
			args:   []string{"pool", "enable", "twp_1"},
			want:   "POST /v1/template-warm-pools/twp_1/enable",
			out:    []string{"state", "enabled"},
		},
		{
			name:   "pool drain",
			routes: map[string]http.HandlerFunc{"POST /v1/template-warm-pools/twp_1/drain": reply(200, strings.Replace(poolJSON, `"enabled"`, `"draining"`, 1))},
			args:   []string{"pool", "drain", "twp_1"},
			want:   "POST /v1/template-warm-pools/twp_1/drain",
			out:    []string{"state", "draining"},
		},
		{
			name:   "pool status",
			routes: map[string]http.HandlerFunc{"GET /v1/template-warm-pools/twp_1/status": reply(200, `{"target":3,"ready":2,"warming":1}`)},
			args:   []string{"pool", "status", "twp_1"},
			want:   "GET /v1/template-warm-pools/twp_1/status",
			out:    []string{"TARGET", "READY", "WARMING", "3", "2", "1"},
		},
		{
			name: "pool instances",
			routes: map[string]http.HandlerFunc{"GET /v1/template-warm-pools/twp_1/instances": reply(200,
				`{"items":[{"id":"inst_1","state":"ready","template_build_id":"tb_1","address":"127.0.0.1","ports":{"http":40001},"labels":{"map":"a"},"sandbox_id":null}],"next_page_token":null}`)},
			args: []string{"pool", "instances", "twp_1", "--state", "ready"},
			want: "GET /v1/template-warm-pools/twp_1/instances", wantQuery: url.Values{"state": {"ready"}},
			out: []string{"ID", "STATE", "inst_1", "ready", "tb_1", "127.0.0.1", "http:40001", "map=a"},
		},
		{
			name:   "sandbox create",
			routes: map[string]http.HandlerFunc{"POST /v1/sandboxes": reply(201, sandboxJSON)},
			args: []string{"sandbox", "create", "--template", "echo", "--pool", "twp_1", "--mode", "require", "--wait-ms", "500",
				"--timeout-ms", "60000", "--label", "user=u1", "--selector", "map=a,mode=b", "--selector", "map=a",
				"--metadata", `{"match":"m1"}`},
			want: "POST /v1/sandboxes",
			wantBody: `{"template":"echo","warm_pool":{"id":"twp_1","mode":"require","wait_ms":500},"timeout_ms":60000,
				"labels":{"user":"u1"},"selectors":[{"labels":{"map":"a","mode":"b"}},{"labels":{"map":"a"}}],"metadata":{"match":"m1"}}`,
			out: []string{"ID", "STATE", "TEMPLATE", "ADDRESS", "PORTS", "SOURCE", "EXPIRES",
				"sb_1", "running", "echo", "127.0.0.1", "http:41234", "warm_pool (twp_1)", "2025-01-02T03:09:05Z",
				"\naddress 127.0.0.1\n", "port http 41234\n"},
		},
		{
			name:     "sandbox create cold with env and a duration timeout",
			routes:   map[string]http.HandlerFunc{"POST /v1/sandboxes": reply(201, sandboxJSON)},
			args:     []string{"sandbox", "create", "--template", "echo", "--env", "A=1", "--timeout-ms", "10m", "--vcpus", "2"},
			want:     "POST /v1/sandboxes",
			wantBody: `{"template":"echo","env":{"A":"1"},"timeout_ms":600000,"vcpus":2}`,
		},
		{
			name: "sandbox list with filters",
			routes: map[string]http.HandlerFunc{"GET /v1/sandboxes": reply(200,
				`{"items":[`+sandboxJSON+`,{"id":"sb_2","template":"echo","state":"stopped","ports":{},"warm_pool_checkout":{"source":"cold","mode":"prefer"}}],"next_page_token":null}`)},
			args:      []string{"sandbox", "list", "--state", "running", "--pool", "twp_1", "--template", "echo", "--label", "user=u1"},
			want:      "GET /v1/sandboxes",
			wantQuery: url.Values{"state": {"running"}, "warm_pool_id": {"twp_1"}, "template": {"echo"}, "label": {"user=u1"}},
			out:       []string{"EXPIRES", "sb_1", "warm_pool (twp_1)", "sb_2", "stopped", "cold"},
		},
		{
			name:   "sandbox get",
			routes: map[string]http.HandlerFunc{"GET /v1/sandboxes/sb_1": reply(200, sandboxJSON)},
			args:   []string{"sandbox", "get", "sb_1"},
			want:   "GET /v1/sandboxes/sb_1",
			out:    []string{"sb_1", "address 127.0.0.1", "port http 41234"},
		},
		{
			name:   "sandbox delete",
			routes: map[string]http.HandlerFunc{"DELETE /v1/sandboxes/sb_1": reply(204, "")},
			args:   []string{"sandbox", "delete", "sb_1"},
			want:   "DELETE /v1/sandboxes/sb_1",
			out:    []string{"stopping sandbox sb_1"},
		},
		{
			name: "sandbox logs",
			routes: map[string]http.HandlerFunc{"GET /v1/sandboxes/sb_1/logs": func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "boom\n")
			}},
			args:      []string{"sandbox", "logs", "sb_1", "--stream", "stderr", "--tail", "5"},
			want:      "GET /v1/sandboxes/sb_1/logs",
			wantQuery: url.Values{"stream": {"stderr"}, "tail": {"5"}},
			out:       []string{"boom\n"},
		},
		{
			name:     "sandbox timeout",
			routes:   map[string]http.HandlerFunc{"POST /v1/sandboxes/sb_1/timeout": reply(200, sandboxJSON)},
			args:     []string{"sandbox", "timeout", "sb_1", "120000"},
			want:     "POST /v1/sandboxes/sb_1/timeout",
			wantBody: `{"timeout_ms":120000}`,
			out:      []string{"2025-01-02T03:09:05Z"},
		},
		{
			name:     "project create",
			routes:   map[string]http.HandlerFunc{"POST /v1/projects": reply(201, `{"id":"prj_2","name":"team-b"}`)},
			args:     []string{"project", "create", "team-b"},
			want:     "POST /v1/projects",
			wantBody: `{"name":"team-b"}`,
			out:      []string{"ID", "NAME", "prj_2", "team-b"},
		},
		{
			name:   "project list",
			routes: map[string]http.HandlerFunc{"GET /v1/projects": reply(200, `{"items":[{"id":"prj_1","name":"default"}],"next_page_token":null}`)},
			args:   []string{"project", "list"},
			want:   "GET /v1/projects",
			out:    []string{"prj_1", "default"},
		},
		{
			name:     "key create prints the secret",
			routes:   map[string]http.HandlerFunc{"POST /v1/projects/prj_2/api-keys": reply(201, `{"id":"key_1","name":"ci","role":"viewer","prefix":"sbk_ab","secret":"sbk_abcdef"}`)},
			args:     []string{"key", "create", "prj_2", "--name", "ci", "--role", "viewer"},
			want:     "POST /v1/projects/prj_2/api-keys",
			wantBody: `{"name":"ci","role":"viewer"}`,
			out:      []string{"key_1", "viewer", "secret sbk_abcdef"},
		},
		{
			name:   "key list",
			routes: map[string]http.HandlerFunc{"GET /v1/projects/prj_2/api-keys": reply(200, `{"items":[{"id":"key_1","name":"ci","role":"viewer","revoked_at":"2025-01-02T03:04:05Z"}],"next_page_token":null}`)},
			args:   []string{"key", "list", "prj_2"},
			want:   "GET /v1/projects/prj_2/api-keys",
			out:    []string{"REVOKED", "key_1", "2025-01-02T03:04:05Z"},
		},
		{
			name:   "key revoke",
			routes: map[string]http.HandlerFunc{"DELETE /v1/api-keys/key_1": reply(204, "")},
			args:   []string{"key", "revoke", "key_1"},
			want:   "DELETE /v1/api-keys/key_1",
			out:    []string{"revoked key key_1"},
		},
		{
			name:   "host list",
			routes: map[string]http.HandlerFunc{"GET /v1/hosts": reply(200, `{"items":[{"id":"host_1","name":"local","state":"up","isolation":"none","capacity":{"vcpus":2,"memory_mb":4096}}],"next_page_token":null}`)},
			args:   []string{"host", "list"},
			want:   "GET /v1/hosts",
			out:    []string{"ID", "STATE", "ISOLATION", "host_1", "local", "up", "none", "2", "4096"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, nil, newAPI(t, tt.routes), nil, tt.args...)
			if res.err != nil {
				t.Fatalf("error: %v\nstderr: %s", res.err, res.stderr)
			}
			if len(res.reqs) != 1 {
				t.Fatalf("requests %v, want one %s", res.reqs, tt.want)
			}
			r := res.reqs[0]
			if r.String() != tt.want {
				t.Errorf("request %s, want %s", r, tt.want)
			}
			wantQuery := tt.wantQuery
			if wantQuery == nil {
				wantQuery = url.Values{}
			}
			if tt.want == "GET /v1/sandboxes/sb_1/logs" {
				// --stream has a default; compare what the test named.
				for k := range r.Query {
					if _, ok := wantQuery[k]; !ok {
						delete(r.Query, k)
					}
				}
			}
			if !reflect.DeepEqual(r.Query, wantQuery) {
				t.Errorf("query %v, want %v", r.Query, wantQuery)
			}
			if tt.wantBody == "" && r.Body != "" {
				t.Errorf("body %s, want none", r.Body)
			}
			if tt.wantBody != "" && !sameJSON(t, r.Body, tt.wantBody) {
				t.Errorf("body %s\nwant %s", r.Body, tt.wantBody)
			}
			if got := r.Header.Get("Authorization"); got != "Bearer sbk_test" {
				t.Errorf("Authorization %q", got)
			}
			rest := res.stdout
			for _, s := range tt.out {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Fatalf("stdout lacks %q (in order); stdout:\n%s", s, res.stdout)
				}
				rest = rest[i+len(s):]
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	tests := []struct {
		name   string
		routes map[string]http.HandlerFunc
		args   []string
		want   string
	}{
		{
			name:   "sandbox create prints the sandbox",
			routes: map[string]http.HandlerFunc{"POST /v1/sandboxes": reply(201, sandboxJSON)},
			args:   []string{"--json", "sandbox", "create", "--template", "echo"},
			want:   sandboxJSON,
		},
		{
			name:   "pool list prints the items",
			routes: map[string]http.HandlerFunc{"GET /v1/template-warm-pools": reply(200, `{"items":[{"id":"twp_1"},{"id":"twp_2"}],"next_page_token":null}`)},
			args:   []string{"pool", "list", "--json"},
			want:   `[{"id":"twp_1"},{"id":"twp_2"}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, nil, newAPI(t, tt.routes), nil, tt.args...)
			if res.err != nil {
				t.Fatal(res.err)
			}
			// Every field the server sent comes back with its value; the
			// rest are the type's zero values.
			var got, want map[string]any
			var gotList, wantList []map[string]any
			if strings.HasPrefix(tt.want, "[") {
				mustUnmarshal(t, res.stdout, &gotList)
				mustUnmarshal(t, tt.want, &wantList)
				if len(gotList) != len(wantList) {
					t.Fatalf("got %d items, want %d", len(gotList), len(wantList))
				}
				for i := range wantList {
					subset(t, gotList[i], wantList[i])
				}
				return
			}
			mustUnmarshal(t, res.stdout, &got)
			mustUnmarshal(t, tt.want, &want)
			subset(t, got, want)
			if !strings.Contains(res.stdout, "\n  \"id\"") {
				t.Errorf("JSON is not indented:\n%s", res.stdout)
			}
		})
	}
}

func mustUnmarshal(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
}

func subset(t *testing.T, got, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestPoolUpdateResourcesKeepsOtherFields(t *testing.T) {
	a := newAPI(t, map[string]http.HandlerFunc{
		"GET /v1/template-warm-pools/twp_1":   reply(200, poolJSON),
		"PATCH /v1/template-warm-pools/twp_1": reply(200, poolJSON),
	})
	res := run(t, nil, a, nil, "pool", "update", "twp_1", "--memory-mb", "2048")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.reqs) != 2 || res.reqs[1].Method != "PATCH" {
		t.Fatalf("requests %v, want GET then PATCH", res.reqs)
	}
	p := res.reqs[1]
	if !sameJSON(t, p.Body, `{"resources":{"vcpus":1,"memory_mb":2048,"disk_mb":1024}}`) {
		t.Errorf("body %s", p.Body)
	}
	if got := p.Header.Get("If-Match"); got != `"4"` {
		t.Errorf("If-Match %q, want the version read", got)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		routes  map[string]http.HandlerFunc
		args    []string
		env     map[string]string
		printed string // PrintError's output
		noCalls bool
	}{
		{
			name: "validation entries, one line each",
			routes: map[string]http.HandlerFunc{"POST /v1/template-warm-pools": reply(422,
				`{"errors":[{"code":"validation_failed","title":"Unprocessable Entity","detail":"min_ready must be >= 0","field":"min_ready"},
				{"code":"validation_failed","title":"Unprocessable Entity","detail":"is required","field":"template_ref"}]}`)},
			args:    []string{"pool", "create", "--name", "p", "--min-ready", "-1"},
			printed: "error: min_ready must be >= 0 (field: min_ready)\nerror: is required (field: template_ref)\n",
		},
		{
			name: "unavailable",
			routes: map[string]http.HandlerFunc{"POST /v1/sandboxes": reply(503,
				`{"errors":[{"code":"warm_pool_unavailable","title":"Service Unavailable","detail":"no ready instance in pool twp_1"}]}`)},
			args:    []string{"sandbox", "create", "--template", "echo", "--pool", "twp_1", "--mode", "require"},
			printed: "error: no ready instance in pool twp_1\n",
		},
		{
			name:    "bad selector is caught before any request",
			args:    []string{"sandbox", "create", "--template", "echo", "--selector", "novalue"},
			printed: "error: --selector \"novalue\": want key=value[,key=value…]\n",
			noCalls: true,
		},
		{
			name:    "metadata must be an object",
			args:    []string{"sandbox", "create", "--template", "echo", "--metadata", "[1]"},
			printed: "error: --metadata: want a JSON object, like '{\"k\":\"v\"}'\n",
			noCalls: true,
		},
		{
			name:    "build command given twice",
			args:    []string{"build", "create", "py", "--cmd", "true", "--", "true"},
			printed: "error: give the command once: --cmd, --arg or after --\n",
			noCalls: true,
		},
		{
			name:    "build without a command",
			args:    []string{"build", "create", "py"},
			printed: "error: no command: give --cmd, --arg or an argv after --\n",
			noCalls: true,
		},
		{
			name:    "bad readiness check",
			args:    []string{"build", "create", "py", "--readiness", "tcp", "--arg", "x"},
			printed: "error: --readiness \"tcp\": want port, process, http or http:/path\n",
			noCalls: true,
		},
		{
			name:    "pool update without flags",
			args:    []string{"pool", "update", "twp_1"},
			printed: "error: nothing to update: give at least one flag (see --help)\n",
			noCalls: true,
		},
		{
			name:    "no API key anywhere",
			args:    []string{"pool", "list"},
			env:     map[string]string{"STANDBY_API_KEY": "", "STANDBY_DATA_DIR": "/nonexistent/standby-data"},
			printed: "error: no API key: pass --api-key, set STANDBY_API_KEY, or point --data-dir at the server's data directory (/nonexistent/standby-data/admin.key not found)\n",
			noCalls: true,
		},
		{
			name:    "wrong number of arguments",
			args:    []string{"sandbox", "get"},
			printed: "error: accepts 1 arg(s), received 0\n",
			noCalls: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, nil, newAPI(t, tt.routes), tt.env, tt.args...)
			if res.err == nil {
				t.Fatalf("no error; stdout:\n%s", res.stdout)
			}
			var buf bytes.Buffer
			cli.PrintError(&buf, res.err)
			if buf.String() != tt.printed {
				t.Errorf("printed %q\nwant    %q", buf.String(), tt.printed)
			}
			if tt.noCalls && len(res.reqs) != 0 {
				t.Errorf("requests %v, want none", res.reqs)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q on error", res.stdout)
			}
		})
	}
}

func TestGlobalFlags(t *testing.T) {
	keyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(keyDir, "admin.key"), []byte("sbk_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		args        []string
		env         map[string]string
		wantKey     string
		wantProject string
	}{
		{"key from env", nil, nil, "sbk_test", ""},
		{"key flag wins over env", []string{"--api-key", "sbk_flag"}, nil, "sbk_flag", ""},
		{"key from the data dir flag", []string{"--data-dir", keyDir}, map[string]string{"STANDBY_API_KEY": ""}, "sbk_fromfile", ""},
		{"key from the data dir env", nil, map[string]string{"STANDBY_API_KEY": "", "STANDBY_DATA_DIR": keyDir}, "sbk_fromfile", ""},
		{"project flag", []string{"--project", "prj_9"}, nil, "sbk_test", "prj_9"},
		{"project env", nil, map[string]string{"STANDBY_PROJECT": "prj_8"}, "sbk_test", "prj_8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAPI(t, map[string]http.HandlerFunc{"GET /v1/hosts": reply(200, `{"items":[],"next_page_token":null}`)})
			res := run(t, nil, a, tt.env, append(tt.args, "host", "list")...)
			if res.err != nil {
				t.Fatal(res.err)
			}
			h := res.reqs[0].Header
			if got := h.Get("Authorization"); got != "Bearer "+tt.wantKey {
				t.Errorf("Authorization %q, want key %s", got, tt.wantKey)
			}
			if got := h.Get(client.ProjectHeader); got != tt.wantProject {
				t.Errorf("%s %q, want %q", client.ProjectHeader, got, tt.wantProject)
			}
		})
	}
}

func TestServerFlagWinsOverEnv(t *testing.T) {
	hit := newAPI(t, map[string]http.HandlerFunc{"GET /v1/hosts": reply(200, `{"items":[],"next_page_token":null}`)})
	srv := httptest.NewServer(hit)
	t.Cleanup(srv.Close)
	// The env points at another fake that must not be called.
	res := run(t, nil, newAPI(t, nil), nil, "--server", strings.TrimPrefix(srv.URL, "http://"), "host", "list")
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(hit.requests()) != 1 {
		t.Errorf("server named by --server saw %d requests, want 1", len(hit.requests()))
	}
}

// poolSeq answers GET of twp_1 with ready = min(call-1, max), the rest
// warming, so each poll shows progress.
func poolSeq(minReady, max int, state string) (http.HandlerFunc, func() int) {
	var mu sync.Mutex
	calls := 0
	return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			ready := min(calls, max)
			calls++
			mu.Unlock()
			body := fmt.Sprintf(`{"id":"twp_1","state":%q,"min_ready":%d,"status":{"ready":%d,"warming":%d}}`,
				state, minReady, ready, minReady-ready)
			reply(200, body)(w, r)
		}, func() int {
			mu.Lock()
			defer mu.Unlock()
			return calls
		}
}

func TestPoolWait(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		minReady   int
		max        int // ready never goes above
		state      string
		wantStderr string
		wantErr    string
		wantCalls  int
	}{
		{
			name:     "until min_ready",
			args:     []string{"pool", "wait", "twp_1"},
			minReady: 3, max: 3, state: "enabled",
			wantStderr: "pool twp_1: 0/3 ready, 3 warming\npool twp_1: 1/3 ready, 2 warming\n" +
				"pool twp_1: 2/3 ready, 1 warming\npool twp_1: 3/3 ready, 0 warming\n",
			wantCalls: 4,
		},
		{
			name:     "until --ready",
			args:     []string{"pool", "wait", "twp_1", "--ready", "1"},
			minReady: 3, max: 3, state: "enabled",
			wantStderr: "pool twp_1: 0/1 ready, 3 warming\npool twp_1: 1/1 ready, 2 warming\n",
			wantCalls:  2,
		},
		{
			name:     "timeout",
			args:     []string{"pool", "wait", "twp_1", "--timeout", "500ms"},
			minReady: 3, max: 1, state: "enabled",
			wantStderr: "pool twp_1: 0/3 ready, 3 warming\npool twp_1: 1/3 ready, 2 warming\n",
			wantErr:    "pool twp_1: 1/3 ready, 2 warming; still not ready after 500ms",
		},
		{
			name:     "a disabled pool will not fill",
			args:     []string{"pool", "wait", "twp_1"},
			minReady: 2, max: 2, state: "disabled",
			wantStderr: "pool twp_1: 0/2 ready, 2 warming (disabled)\n",
			wantErr:    "pool twp_1 is disabled: it will not fill (enable it first)",
			wantCalls:  1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, calls := poolSeq(tt.minReady, tt.max, tt.state)
			res := run(t, nil, newAPI(t, map[string]http.HandlerFunc{"GET /v1/template-warm-pools/twp_1": h}), nil, tt.args...)
			if tt.wantErr == "" && res.err != nil {
				t.Fatalf("error %v", res.err)
			}
			if tt.wantErr != "" && (res.err == nil || res.err.Error() != tt.wantErr) {
				t.Fatalf("error %v, want %q", res.err, tt.wantErr)
			}
			if res.stderr != tt.wantStderr {
				t.Errorf("stderr:\n%s\nwant:\n%s", res.stderr, tt.wantStderr)
			}
			if tt.wantCalls > 0 && calls() != tt.wantCalls {
				t.Errorf("%d polls, want %d", calls(), tt.wantCalls)
			}
		})
	}
}

func TestPoolWaitJSON(t *testing.T) {
	h, _ := poolSeq(1, 1, "enabled")
	res := run(t, nil, newAPI(t, map[string]http.HandlerFunc{"GET /v1/template-warm-pools/twp_1": h}), nil, "pool", "wait", "twp_1", "--json")
	if res.err != nil {
		t.Fatal(res.err)
	}
	var p map[string]any
	mustUnmarshal(t, res.stdout, &p)
	if p["id"] != "twp_1" || p["status"].(map[string]any)["ready"] != 1.0 {
		t.Errorf("printed %v", p)
	}
}

func TestPoolWaitHonoursCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, calls := poolSeq(3, 0, "enabled")
	a := newAPI(t, map[string]http.HandlerFunc{"GET /v1/template-warm-pools/twp_1": func(w http.ResponseWriter, r *http.Request) {
		h(w, r)
		if calls() == 3 {
			cancel() // as Ctrl-C would, mid-wait
		}
	}})
	res := run(t, ctx, a, nil, "pool", "wait", "twp_1", "--timeout", "0")
	if !errors.Is(res.err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", res.err)
	}
	if calls() > 4 {
		t.Errorf("%d polls after cancel", calls())
	}
}

func TestPoolWaitNotFound(t *testing.T) {
	a := newAPI(t, map[string]http.HandlerFunc{"GET /v1/template-warm-pools/twp_x": reply(404,
		`{"errors":[{"code":"not_found","title":"Not Found","detail":"warm pool twp_x not found"}]}`)})
	res := run(t, nil, a, nil, "pool", "wait", "twp_x")
	var ae *client.APIError
	if !errors.As(res.err, &ae) || ae.Status != 404 {
		t.Fatalf("error %v, want the 404", res.err)
	}
}

func TestExtraCommands(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"data dir flag", []string{"serve", "--data-dir", "/srv/standby"}, nil, "/srv/standby"},
		{"data dir env", []string{"serve"}, map[string]string{"STANDBY_DATA_DIR": "/var/lib/standby"}, "/var/lib/standby"},
		{"data dir default", []string{"serve"}, nil, cli.DefaultDataDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			serve := &cobra.Command{
				Use: "serve",
				RunE: func(cmd *cobra.Command, args []string) error {
					var err error
					got, err = cmd.Flags().GetString("data-dir")
					return err
				},
			}
			root := cli.NewRootCommand(cli.Options{
				Stdout: io.Discard, Stderr: io.Discard,
				Getenv:   func(k string) string { return tt.env[k] },
				Commands: []*cobra.Command{serve},
			})
			root.SetArgs(tt.args)
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("serve saw --data-dir %q, want %q", got, tt.want)
			}
		})
	}
}
