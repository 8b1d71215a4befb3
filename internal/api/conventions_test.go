package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

func TestMalformedJSON(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{"{", "[1]", `"x"`, "null", "", "{} {}", "{\"a\":1,}"} {
		r := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, body), http.StatusBadRequest)
		r.errFields(t, standby.EBadRequest)
	}
	if n := e.poolCount(e.project); n != 0 {
		t.Fatalf("%d pools", n)
	}
}

func TestAuthAndRoles(t *testing.T) {
	e := newEnv(t)
	pool := e.createPool(e.dev, map[string]any{"name": "p"})
	poolPath := "/v1/template-warm-pools/" + pool["id"].(string)
	otherPool := e.createPool(e.otherDev, map[string]any{"name": "theirs"})
	otherPath := "/v1/template-warm-pools/" + otherPool["id"].(string)

	revoked := e.createKey(e.project, standby.RoleAdmin)
	keys, _, err := e.store.FindAPIKeys(context.Background(), standby.APIKeyFilter{ProjectID: e.project})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Hash == standby.HashKey(revoked) {
			must(t, e.do("DELETE", "/v1/api-keys/"+k.ID, e.admin, nil), http.StatusNoContent)
		}
	}

	tests := []struct {
		name         string
		method, path string
		key          string
		body         any
		status       int
		code         string
	}{
		{"no key", "GET", "/v1/template-warm-pools", "", nil, 401, standby.EUnauthorized},
		{"unknown key", "GET", "/v1/template-warm-pools", "sbk_nope", nil, 401, standby.EUnauthorized},
		{"revoked key", "GET", "/v1/template-warm-pools", revoked, nil, 401, standby.EUnauthorized},
		{"viewer reads", "GET", poolPath, e.viewer, nil, 200, ""},
		{"viewer writes", "PATCH", poolPath, e.viewer, map[string]any{"name": "x"}, 403, standby.EForbidden},
		{"viewer creates", "POST", "/v1/sandboxes", e.viewer, map[string]any{"template": "base"}, 403, standby.EForbidden},
		{"developer writes", "POST", poolPath + "/reconcile", e.dev, nil, 200, ""},
		{"developer creates project", "POST", "/v1/projects", e.dev, map[string]any{"name": "x"}, 403, standby.EForbidden},
		{"developer lists keys", "GET", "/v1/projects/" + e.project + "/api-keys", e.dev, nil, 403, standby.EForbidden},
		{"developer gets own project", "GET", "/v1/projects/" + e.project, e.dev, nil, 200, ""},
		{"developer gets other project", "GET", "/v1/projects/" + e.other, e.dev, nil, 404, standby.ENotFound},
		{"other project's pool is 404", "GET", otherPath, e.dev, nil, 404, standby.ENotFound},
		{"other project's pool patch is 404", "PATCH", otherPath, e.dev, map[string]any{"name": "x"}, 404, standby.ENotFound},
		{"other project's pool delete is 404", "DELETE", otherPath, e.dev, nil, 404, standby.ENotFound},
		{"other project's pool for viewer is 404", "GET", otherPath + "/status", e.viewer, nil, 404, standby.ENotFound},
		{"admin of default sees own pool", "GET", poolPath, e.admin, nil, 200, ""},
		{"admin without header: other project's pool 404", "GET", otherPath, e.admin, nil, 404, standby.ENotFound},
		{"unknown route", "GET", "/v1/nothing", e.dev, nil, 404, standby.ENotFound},
		{"hosts any role", "GET", "/v1/hosts", e.viewer, nil, 200, ""},
		{"healthz needs no key", "GET", "/healthz", "", nil, 200, ""},
		{"readyz needs no key", "GET", "/readyz", "", nil, 200, ""},
		{"openapi needs no key", "GET", "/openapi.json", "", nil, 200, ""},
		{"metrics needs no key", "GET", "/metrics", "", nil, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := must(t, e.do(tt.method, tt.path, tt.key, tt.body), tt.status)
			if tt.code != "" {
				r.errFields(t, tt.code)
			}
		})
	}
	t.Run("admin acts in another project", func(t *testing.T) {
		h := header{headerProject, e.other}
		got := must(t, e.do("GET", otherPath, e.admin, nil, h), http.StatusOK).json(t)
		if got["name"] != "theirs" {
			t.Fatalf("%v", got)
		}
		must(t, e.do("GET", poolPath, e.admin, nil, h), http.StatusNotFound)
		created := must(t, e.do("POST", "/v1/template-warm-pools", e.admin, map[string]any{"name": "by-admin", "template_ref": "base"}, h), http.StatusCreated).json(t)
		must(t, e.do("GET", "/v1/template-warm-pools/"+created["id"].(string), e.otherDev, nil), http.StatusOK)
		must(t, e.do("GET", otherPath, e.dev, nil, h), http.StatusForbidden)
		must(t, e.do("GET", otherPath, e.admin, nil, header{headerProject, "prj_nope"}), http.StatusNotFound)
	})
}

func TestProjectsAndKeys(t *testing.T) {
	e := newEnv(t)
	p := must(t, e.do("POST", "/v1/projects", e.admin, map[string]any{"name": "team-a", "quotas": map[string]any{"max_sandboxes": 10}}), http.StatusCreated)
	proj := p.json(t)
	id := proj["id"].(string)
	if p.header.Get("ETag") != `"1"` || proj["quotas"].(map[string]any)["max_sandboxes"] != 10.0 {
		t.Fatalf("%v %q", proj, p.header.Get("ETag"))
	}
	must(t, e.do("POST", "/v1/projects", e.admin, map[string]any{"name": "team-a"}), http.StatusConflict)
	r := must(t, e.do("POST", "/v1/projects", e.admin, map[string]any{"name": "", "quotas": map[string]any{"max_vcpus": -1, "gpus": 1}}), http.StatusUnprocessableEntity)
	if f := r.errFields(t, standby.EValidation); !hasField(f, "name") || !hasField(f, "quotas.max_vcpus") || !hasField(f, "quotas.gpus") {
		t.Fatalf("fields %v", f)
	}
	// Built-in templates exist in the new project.
	key := must(t, e.do("POST", "/v1/projects/"+id+"/api-keys", e.admin, map[string]any{"name": "ci", "role": "developer"}), http.StatusCreated).json(t)
	secret, _ := key["secret"].(string)
	if !strings.HasPrefix(secret, standby.KeySecretPrefix) || !strings.HasPrefix(key["id"].(string), standby.PrefixAPIKey) {
		t.Fatalf("key %v", key)
	}
	tpls := must(t, e.do("GET", "/v1/templates", secret, nil), http.StatusOK).json(t)
	var names []string
	for _, it := range tpls["items"].([]any) {
		names = append(names, it.(map[string]any)["name"].(string))
	}
	if !slices.Contains(names, "base") || !slices.Contains(names, "echo") {
		t.Fatalf("templates %v", names)
	}
	list := must(t, e.do("GET", "/v1/projects/"+id+"/api-keys", e.admin, nil), http.StatusOK).json(t)
	items := list["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["secret"] != nil {
		t.Fatalf("key list shows secrets or is wrong: %v", list)
	}
	must(t, e.do("POST", "/v1/projects/"+id+"/api-keys", e.admin, map[string]any{"name": "x", "role": "root"}), http.StatusUnprocessableEntity)
	// Developer list shows only its own project.
	l := must(t, e.do("GET", "/v1/projects", secret, nil), http.StatusOK).json(t)
	if items := l["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != id {
		t.Fatalf("developer project list %v", l)
	}
	// PATCH quotas: object replaced whole; null clears.
	got := must(t, e.do("PATCH", "/v1/projects/"+id, e.admin, map[string]any{"quotas": map[string]any{"max_vcpus": 4}}), http.StatusOK).json(t)
	if q := got["quotas"].(map[string]any); q["max_sandboxes"] != nil || q["max_vcpus"] != 4.0 || got["version"] != 2.0 {
		t.Fatalf("patched %v", got)
	}
	must(t, e.do("PATCH", "/v1/projects/"+id, e.admin, map[string]any{"name": "x"}, header{"If-Match", `"1"`}), http.StatusPreconditionFailed)
	// Revoke: the key stops working at once.
	must(t, e.do("DELETE", "/v1/api-keys/"+key["id"].(string), e.admin, nil), http.StatusNoContent)
	must(t, e.do("GET", "/v1/templates", secret, nil), http.StatusUnauthorized)
	must(t, e.do("DELETE", "/v1/api-keys/"+key["id"].(string), e.admin, nil), http.StatusNotFound)
}

func TestTemplatesAndBuilds(t *testing.T) {
	e := newEnv(t)
	must(t, e.do("POST", "/v1/templates", e.dev, map[string]any{"name": "app", "description": "d", "labels": map[string]any{"team": "x"}}), http.StatusCreated)
	must(t, e.do("POST", "/v1/templates", e.dev, map[string]any{"name": "app"}), http.StatusConflict).errFields(t, standby.EConflict)
	r := must(t, e.do("POST", "/v1/templates", e.dev, map[string]any{"name": "bad name", "labels": map[string]any{"k": "bad value"}}), http.StatusUnprocessableEntity)
	if f := r.errFields(t, standby.EValidation); !hasField(f, "name") || !hasField(f, "labels.k") {
		t.Fatalf("fields %v", f)
	}
	r = must(t, e.do("POST", "/v1/templates/app/builds", e.dev, map[string]any{
		"start_cmd": []any{}, "ports": []any{map[string]any{"name": "Bad"}}, "resources": map[string]any{"vcpus": -1},
		"health_check": map[string]any{"type": "tcp"}, "workdir": "../x", "extra": true,
	}), http.StatusUnprocessableEntity)
	for _, want := range []string{"start_cmd", "ports[0].name", "resources.vcpus", "health_check.type", "workdir", "extra"} {
		if f := r.errFields(t, standby.EValidation); !hasField(f, want) {
			t.Fatalf("fields %v, want %s", f, want)
		}
	}
	b1 := must(t, e.do("POST", "/v1/templates/app/builds", e.dev, map[string]any{
		"start_cmd": []any{"standby", "idle"}, "ports": []any{map[string]any{"name": "http"}},
		"readiness_health_check": map[string]any{"type": "http", "data": map[string]any{"endpoint": "/healthz"}},
	}), http.StatusCreated).json(t)
	if !strings.HasPrefix(b1["id"].(string), standby.PrefixBuild) || b1["status"] != "ready" || b1["number"] != 1.0 ||
		b1["canonical_ref"] != "app@"+b1["id"].(string) || b1["runtime_artifact_id"] == "" || b1["compatibility_key"] == "" {
		t.Fatalf("build %v", b1)
	}
	if res := b1["resources"].(map[string]any); res["vcpus"].(float64) <= 0 {
		t.Fatalf("resources not defaulted %v", res)
	}
	if e.ctrl.wokenAll() == 0 {
		t.Fatalf("new build did not wake pools")
	}
	b2 := must(t, e.do("POST", "/v1/templates/app/builds", e.dev, map[string]any{"start_cmd": []any{"standby", "idle"}, "tags": []any{"stable"}}), http.StatusCreated).json(t)
	builds := must(t, e.do("GET", "/v1/templates/app/builds", e.viewer, nil), http.StatusOK).json(t)["items"].([]any)
	if len(builds) != 2 || builds[0].(map[string]any)["id"] != b2["id"] {
		t.Fatalf("builds not newest first: %v", builds)
	}
	must(t, e.do("GET", "/v1/templates/app/builds/"+b1["id"].(string), e.viewer, nil), http.StatusOK)
	must(t, e.do("GET", "/v1/templates/echo/builds/"+b1["id"].(string), e.viewer, nil), http.StatusNotFound)

	// A pool tracking stable; moving the tag wakes every pool.
	pool := e.createPool(e.dev, map[string]any{"name": "tracker", "template_ref": "app:stable", "version_policy": "track_tag"})
	if pool["resolved_template_build_id"] != b2["id"] {
		t.Fatalf("pool resolved %v, want %v", pool["resolved_template_build_id"], b2["id"])
	}
	woken := e.ctrl.wokenAll()
	moved := must(t, e.do("PUT", "/v1/templates/app/tags/stable", e.dev, map[string]any{"build_id": b1["id"]}), http.StatusOK).json(t)
	if !slices.Contains(toStrings(moved["tags"]), "stable") || e.ctrl.wokenAll() == woken {
		t.Fatalf("tag move: %v", moved)
	}
	tpl := must(t, e.do("GET", "/v1/templates/app", e.viewer, nil), http.StatusOK).json(t)
	if tags := tpl["tags"].(map[string]any); tags["stable"] != b1["id"] || tags["latest"] != b2["id"] {
		t.Fatalf("tags %v", tags)
	}
	must(t, e.do("PUT", "/v1/templates/app/tags/stable", e.dev, map[string]any{"build_id": "tb_nope"}), http.StatusUnprocessableEntity)
	// In use: 409; after the pool is deleted: 204.
	must(t, e.do("DELETE", "/v1/templates/app", e.dev, nil), http.StatusConflict)
	must(t, e.do("DELETE", "/v1/template-warm-pools/"+pool["id"].(string), e.dev, nil), http.StatusNoContent)
	must(t, e.do("DELETE", "/v1/templates/app", e.dev, nil), http.StatusNoContent)
	must(t, e.do("GET", "/v1/templates/app", e.dev, nil), http.StatusNotFound)
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t)
	body := map[string]any{"name": "once", "template_ref": "echo", "min_ready": 1}
	k := header{"Idempotency-Key", "k-1"}
	first := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, body, k), http.StatusCreated)
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first response marked replayed")
	}
	second := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, body, k), http.StatusCreated)
	if second.header.Get("Idempotent-Replayed") != "true" || string(second.body) != string(first.body) || second.header.Get("ETag") != first.header.Get("ETag") {
		t.Fatalf("replay: %q %s vs %s", second.header.Get("Idempotent-Replayed"), second.body, first.body)
	}
	if n := e.poolCount(e.project); n != 1 {
		t.Fatalf("%d pools after a replay", n)
	}
	body["min_ready"] = 2
	must(t, e.do("POST", "/v1/template-warm-pools", e.dev, body, k), http.StatusUnprocessableEntity).errFields(t, standby.EIdempotencyKeyReused)
	// Another key of the same project has its own key space.
	other := e.createKey(e.project, standby.RoleDeveloper)
	must(t, e.do("POST", "/v1/template-warm-pools", other, body, k), http.StatusCreated)
	// A 4xx is remembered too; a 5xx would be released.
	bad := map[string]any{"name": ""}
	k2 := header{"Idempotency-Key", "k-2"}
	a := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, bad, k2), http.StatusUnprocessableEntity)
	b := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, bad, k2), http.StatusUnprocessableEntity)
	if b.header.Get("Idempotent-Replayed") != "true" || string(a.body) != string(b.body) {
		t.Fatalf("4xx not replayed")
	}
	// Sandboxes: the same key checks out once.
	pool := e.createPool(e.dev, map[string]any{"name": "sb"})
	e.addReady(pool["id"].(string), 2, nil)
	sbBody := map[string]any{"warm_pool": map[string]any{"id": pool["id"], "mode": "require"}}
	s1 := must(t, e.do("POST", "/v1/sandboxes", e.dev, sbBody, header{"Idempotency-Key", "sb-1"}), http.StatusCreated).json(t)
	s2 := must(t, e.do("POST", "/v1/sandboxes", e.dev, sbBody, header{"Idempotency-Key", "sb-1"}), http.StatusCreated).json(t)
	if s1["id"] != s2["id"] {
		t.Fatalf("second checkout with the same key made %v", s2["id"])
	}
	st := must(t, e.do("GET", "/v1/template-warm-pools/"+pool["id"].(string), e.dev, nil), http.StatusOK).json(t)["status"].(map[string]any)
	if st["ready"] != 1.0 || st["claimed"] != 1.0 {
		t.Fatalf("status %v", st)
	}
}

// TestOpenAPIRouteWalk walks the real mux's route table: every route is
// registered at its pattern and appears in /openapi.json, and every
// operation of /openapi.json is a route.
func TestOpenAPIRouteWalk(t *testing.T) {
	e := newEnv(t)
	r := must(t, e.do("GET", "/openapi.json", "", nil), http.StatusOK)
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	seen := map[string]bool{}
	for _, rt := range e.srv.routes {
		key := rt.method + " " + rt.pattern
		seen[key] = true
		// The mux serves this route at this pattern.
		path := rt.pattern
		for _, name := range pathParamNames(rt.pattern) {
			path = strings.Replace(path, "{"+name+"}", "x"+name, 1)
		}
		_, pattern := e.srv.mux.Handler(httptest.NewRequest(rt.method, path, nil))
		if pattern != key {
			t.Errorf("mux serves %s %s with %q, want %q", rt.method, path, pattern, key)
		}
		op, ok := doc.Paths[rt.pattern][strings.ToLower(rt.method)]
		if !ok {
			t.Errorf("%s missing from /openapi.json", key)
			continue
		}
		if op["summary"] == "" || op["responses"] == nil {
			t.Errorf("%s: operation without summary or responses", key)
		}
		var params []string
		for _, p := range asSlice(op["parameters"]) {
			if m := p.(map[string]any); m["in"] == "path" {
				params = append(params, m["name"].(string))
			}
		}
		if !slices.Equal(params, pathParamNames(rt.pattern)) {
			t.Errorf("%s: path parameters %v", key, params)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !seen[strings.ToUpper(method)+" "+path] {
				t.Errorf("/openapi.json has %s %s, which is no route", method, path)
			}
		}
	}
	if len(seen) < 40 {
		t.Fatalf("only %d routes", len(seen))
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t)
	must(t, e.do("GET", "/v1/hosts", e.viewer, nil), http.StatusOK)
	m := must(t, e.do("GET", "/metrics", "", nil), http.StatusOK)
	if !strings.Contains(string(m.body), `standby_http_requests_total{code="200",route="GET /v1/hosts"} 1`) {
		t.Fatalf("metrics lack the request:\n%s", m.body)
	}
	if got := must(t, e.do("GET", "/healthz", "", nil), http.StatusOK).json(t); got["status"] != "ok" {
		t.Fatalf("healthz %v", got)
	}
	notReady, err := New(Config{Store: e.store, Controller: e.ctrl, Ready: func() error { return context.DeadlineExceeded }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(notReady.Handler())
	defer srv.Close()
	r := must(t, doRequest(t, srv.URL, "GET", "/readyz", "", nil), http.StatusServiceUnavailable)
	if strings.Contains(string(r.body), "deadline") {
		t.Fatalf("readyz leaks the cause: %s", r.body)
	}
	must(t, doRequest(t, srv.URL, "GET", "/metrics", "", nil), http.StatusNotFound)
}

// TestDeps keeps the package rules of STYLE.md: the api uses the Store and
// Agent interfaces only, never a concrete store, the agent or the
// controller.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if !strings.Contains(string(out), "github.com/standbyhq/standby\n") {
		t.Fatalf("go list found no dependencies:\n%s", out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dep, "github.com/standbyhq/standby/") {
			continue
		}
		for _, bad := range []string{"/internal/store", "/internal/agent", "/internal/controller", "/internal/cli", "/cmd/", "/client"} {
			if strings.Contains(dep, bad) {
				t.Errorf("internal/api imports %s", dep)
			}
		}
	}
}

func TestIdempotencyInProgressAndFailures(t *testing.T) {
	e := newEnv(t)
	pool := e.createPool(e.dev, map[string]any{"name": "p"})
	id := pool["id"].(string)
	body := map[string]any{"warm_pool": map[string]any{"id": id, "mode": "require", "wait_ms": 30000}}
	k := header{"Idempotency-Key", "slow"}
	done := make(chan resp, 1)
	go func() { done <- doRequest(t, e.http.URL, "POST", "/v1/sandboxes", e.dev, body, k) }()
	// Once the first request waits for a ready instance, its key is
	// reserved: a retry is 409 until it finishes.
	waitFor(t, "the first request to wait", func() bool { return e.ctrl.readySubscriptions() > 0 })
	must(t, e.do("POST", "/v1/sandboxes", e.dev, body, k), http.StatusConflict).errFields(t, standby.EConflict)
	e.addReady(id, 1, nil)
	e.ctrl.fireReady()
	first := must(t, <-done, http.StatusCreated)
	again := must(t, e.do("POST", "/v1/sandboxes", e.dev, body, k), http.StatusCreated)
	if string(again.body) != string(first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("no replay after completion")
	}

	// An uncoded error is a bare 500 that leaks nothing, and releases the
	// key so a retry runs again.
	e.ctrl.mu.Lock()
	e.ctrl.coldErr = errors.New("database is locked: SELECT secret FROM keys")
	e.ctrl.mu.Unlock()
	cold := map[string]any{"template": "base"}
	k2 := header{"Idempotency-Key", "cold"}
	r := must(t, e.do("POST", "/v1/sandboxes", e.dev, cold, k2), http.StatusInternalServerError)
	r.errFields(t, standby.EInternal)
	if strings.Contains(string(r.body), "SELECT") || strings.Contains(string(r.body), "detail") {
		t.Fatalf("500 leaks: %s", r.body)
	}
	e.ctrl.mu.Lock()
	e.ctrl.coldErr = nil
	e.ctrl.mu.Unlock()
	before := e.ctrl.coldStarts()
	r = must(t, e.do("POST", "/v1/sandboxes", e.dev, cold, k2), http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "" || e.ctrl.coldStarts() != before+1 {
		t.Fatalf("retry after a 500 did not run again")
	}
	// A coded 503 from the cold path carries Retry-After.
	e.ctrl.mu.Lock()
	e.ctrl.coldErr = standby.Errorf(standby.EUnavailable, "no host can take it")
	e.ctrl.mu.Unlock()
	r = must(t, e.do("POST", "/v1/sandboxes", e.dev, cold), http.StatusServiceUnavailable)
	if r.errFields(t, standby.EUnavailable); r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
}

func TestIdempotencyCleanup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	old := &standby.IdempotencyRecord{Scope: "key_x", Key: "old", RequestHash: "h", CreatedAt: standby.Now().Add(-25 * time.Hour)}
	fresh := &standby.IdempotencyRecord{Scope: "key_x", Key: "fresh", RequestHash: "h", CreatedAt: standby.Now().Add(-23 * time.Hour)}
	for _, rec := range []*standby.IdempotencyRecord{old, fresh} {
		if prev, err := e.store.ReserveIdempotencyKey(ctx, rec); err != nil || prev != nil {
			t.Fatalf("reserve: %v %v", prev, err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- e.srv.Run(runCtx) }()
	waitFor(t, "the old key to be forgotten", func() bool {
		probe := &standby.IdempotencyRecord{Scope: "key_x", Key: "old", RequestHash: "other", CreatedAt: standby.Now()}
		prev, err := e.store.ReserveIdempotencyKey(ctx, probe)
		if err != nil {
			t.Fatal(err)
		}
		return prev == nil
	})
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run: %v", err)
	}
	prev, err := e.store.ReserveIdempotencyKey(ctx, &standby.IdempotencyRecord{Scope: "key_x", Key: "fresh", RequestHash: "x", CreatedAt: standby.Now()})
	if err != nil || prev == nil {
		t.Fatalf("a 23-hour-old key was forgotten: %v %v", prev, err)
	}
}
