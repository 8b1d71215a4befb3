package api

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/standbyhq/standby"
)

// seed000Invalid lists one request per seed-000 validation rule, with the
// field the 422 must name. Each body is merged over a valid pool.
var seed000Invalid = []struct {
	name  string
	body  map[string]any
	field string
}{
	{"name empty", map[string]any{"name": ""}, "name"},
	{"name 161 chars", map[string]any{"name": strings.Repeat("n", 161)}, "name"},
	{"template_ref empty", map[string]any{"template_ref": ""}, "template_ref"},
	{"template_ref malformed", map[string]any{"template_ref": "echo:-bad-"}, "template_ref"},
	{"template_ref bad build", map[string]any{"template_ref": "echo@xyz"}, "template_ref"},
	{"template_ref unknown template", map[string]any{"template_ref": "nosuch"}, "template_ref"},
	{"template_ref unknown tag", map[string]any{"template_ref": "echo:nosuchtag"}, "template_ref"},
	{"template_ref unknown build", map[string]any{"template_ref": "echo@tb_00000000000000000000000000"}, "template_ref"},
	{"template differs from template_ref", map[string]any{"template": "base"}, "template"},
	{"min_ready -1", map[string]any{"min_ready": -1}, "min_ready"},
	{"max_ready < min_ready", map[string]any{"min_ready": 3, "max_ready": 2}, "max_ready"},
	{"max_ready -1", map[string]any{"max_ready": -1}, "max_ready"},
	{"resources.vcpus -1", map[string]any{"resources": map[string]any{"vcpus": -1}}, "resources.vcpus"},
	{"resources unknown key", map[string]any{"resources": map[string]any{"gpus": 1}}, "resources.gpus"},
	{"resources not an object", map[string]any{"resources": 4}, "resources"},
	{"checkout_policy bad", map[string]any{"checkout_policy": "sometimes"}, "checkout_policy"},
	{"idle_timeout_seconds 0", map[string]any{"idle_timeout_seconds": 0}, "idle_timeout_seconds"},
	{"stale_after_seconds 0", map[string]any{"stale_after_seconds": 0}, "stale_after_seconds"},
	{"version_policy bad", map[string]any{"version_policy": "newest"}, "version_policy"},
	{"track_tag missing under track_tag", map[string]any{"version_policy": "track_tag"}, "track_tag"},
	{"labels value non-string", map[string]any{"labels": map[string]any{"team": 7}}, "labels"},
	{"metadata not an object", map[string]any{"metadata": []any{1, 2}}, "metadata"},
	{"metadata a string", map[string]any{"metadata": "x"}, "metadata"},
	{"unknown field", map[string]any{"colour": "blue"}, "colour"},
	{"wrong type", map[string]any{"min_ready": "three"}, "min_ready"},
	{"fractional integer", map[string]any{"min_ready": 1.5}, "min_ready"},
	{"null on non-nullable", map[string]any{"name": nil}, "name"},
}

func validPool(over map[string]any) map[string]any {
	b := map[string]any{"name": "p", "template_ref": "echo", "min_ready": 1}
	for k, v := range over {
		b[k] = v
	}
	return b
}

func hasField(fields []string, want string) bool {
	for _, f := range fields {
		if f == want || strings.HasPrefix(f, want+".") {
			return true
		}
	}
	return false
}

func (e *env) poolCount(project string) int {
	e.t.Helper()
	items, _, err := e.store.FindWarmPools(context.Background(), standby.WarmPoolFilter{ProjectID: project, IncludeDeleted: true})
	if err != nil {
		e.t.Fatalf("find pools: %v", err)
	}
	return len(items)
}

func TestCreatePoolValidation(t *testing.T) {
	e := newEnv(t)
	for _, tt := range seed000Invalid {
		t.Run(tt.name, func(t *testing.T) {
			r := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, validPool(tt.body)), http.StatusUnprocessableEntity)
			if fields := r.errFields(t, standby.EValidation); !hasField(fields, tt.field) {
				t.Fatalf("fields %v, want %q", fields, tt.field)
			}
			if n := e.poolCount(e.project); n != 0 {
				t.Fatalf("%d pools stored after a 422", n)
			}
		})
	}
	t.Run("required fields", func(t *testing.T) {
		r := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, map[string]any{}), http.StatusUnprocessableEntity)
		fields := r.errFields(t, standby.EValidation)
		for _, f := range []string{"name", "template_ref"} {
			if !hasField(fields, f) {
				t.Fatalf("fields %v, want %q", fields, f)
			}
		}
	})
	t.Run("every bad field at once", func(t *testing.T) {
		r := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, map[string]any{
			"name": "", "template_ref": "echo", "min_ready": -1, "checkout_policy": "x", "colour": 1, "max_ready": "y",
		}), http.StatusUnprocessableEntity)
		fields := r.errFields(t, standby.EValidation)
		for _, f := range []string{"name", "min_ready", "checkout_policy", "colour", "max_ready"} {
			if !hasField(fields, f) {
				t.Fatalf("fields %v, want %q", fields, f)
			}
		}
	})
}

func TestPatchPoolValidation(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{"name": "p", "min_ready": 1})
	id := p["id"].(string)
	path := "/v1/template-warm-pools/" + id
	before := must(t, e.do("GET", path, e.dev, nil), http.StatusOK).json(t)
	for _, tt := range seed000Invalid {
		if tt.name == "template differs from template_ref" {
			continue // needs template_ref in the same patch; below
		}
		t.Run(tt.name, func(t *testing.T) {
			r := must(t, e.do("PATCH", path, e.dev, tt.body), http.StatusUnprocessableEntity)
			if fields := r.errFields(t, standby.EValidation); !hasField(fields, tt.field) {
				t.Fatalf("fields %v, want %q", fields, tt.field)
			}
			after := must(t, e.do("GET", path, e.dev, nil), http.StatusOK).json(t)
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("pool changed by a rejected PATCH:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
	t.Run("template differs from template_ref", func(t *testing.T) {
		r := must(t, e.do("PATCH", path, e.dev, map[string]any{"template_ref": "echo", "template": "base"}), http.StatusUnprocessableEntity)
		if fields := r.errFields(t, standby.EValidation); !hasField(fields, "template") {
			t.Fatalf("fields %v", fields)
		}
	})
	t.Run("null on every non-nullable field", func(t *testing.T) {
		for _, f := range []string{"name", "template_ref", "min_ready", "max_ready", "resources", "checkout_policy",
			"idle_timeout_seconds", "stale_after_seconds", "version_policy", "labels", "metadata"} {
			r := must(t, e.do("PATCH", path, e.dev, map[string]any{f: nil}), http.StatusUnprocessableEntity)
			if fields := r.errFields(t, standby.EValidation); !hasField(fields, f) {
				t.Fatalf("null %s: fields %v", f, fields)
			}
		}
	})
	after := must(t, e.do("GET", path, e.dev, nil), http.StatusOK).json(t)
	if after["version"].(float64) != 1 {
		t.Fatalf("version %v after only rejected patches", after["version"])
	}
}

func TestCreatePool(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{
		"name": "web", "min_ready": 2, "labels": map[string]any{"Weird Key!": "any value at all"},
		"metadata": map[string]any{"nested": map[string]any{"x": []any{1, "two"}}}, "host_pool_id": "hp1",
	})
	checks := map[string]any{
		"name": "web", "template_ref": "echo", "min_ready": 2.0, "max_ready": 2.0, "checkout_policy": "prefer",
		"version_policy": "pinned_build", "idle_timeout_seconds": 300.0, "stale_after_seconds": 3600.0,
		"state": "enabled", "rollout_generation": 1.0, "version": 1.0, "host_pool_id": "hp1",
		"previous_resolved_template": nil, "previous_resolved_template_build_id": nil, "previous_runtime_artifact_id": nil,
		"deleted_at": nil, "track_tag": nil, "cell_id": nil,
	}
	for k, want := range checks {
		if !reflect.DeepEqual(p[k], want) {
			t.Errorf("%s = %#v, want %#v", k, p[k], want)
		}
	}
	if !strings.HasPrefix(p["id"].(string), standby.PrefixWarmPool) {
		t.Errorf("id %v", p["id"])
	}
	if p["enabled_at"] == nil || p["resolved_template_build_id"] == nil || p["compatibility_key"] == nil {
		t.Errorf("resolution or enabled_at missing: %v", p)
	}
	if !strings.HasPrefix(p["resolved_template"].(string), "echo@tb_") {
		t.Errorf("resolved_template %v", p["resolved_template"])
	}
	if got := p["labels"].(map[string]any)["Weird Key!"]; got != "any value at all" {
		t.Errorf("labels not verbatim: %v", p["labels"])
	}
	res := p["resources"].(map[string]any)
	if res["vcpus"].(float64) <= 0 || res["memory_mb"].(float64) <= 0 {
		t.Errorf("resources not defaulted from the build: %v", res)
	}
	if st := p["status"].(map[string]any); st["target"] != 2.0 {
		t.Errorf("status.target %v", st["target"])
	}
	if e.ctrl.wokenPool(p["id"].(string)) == 0 {
		t.Errorf("controller not woken")
	}
	got := must(t, e.do("GET", "/v1/template-warm-pools/"+p["id"].(string), e.viewer, nil), http.StatusOK)
	if got.header.Get("ETag") != `"1"` {
		t.Errorf("ETag %q", got.header.Get("ETag"))
	}
	if md := got.json(t)["metadata"]; !reflect.DeepEqual(md, map[string]any{"nested": map[string]any{"x": []any{1.0, "two"}}}) {
		t.Errorf("metadata %v", md)
	}

	t.Run("deprecated template alias", func(t *testing.T) {
		p := e.createPool(e.dev, map[string]any{"name": "alias", "template": "base", "template_ref": "base"})
		if p["template_ref"] != "base" {
			t.Fatalf("template_ref %v", p["template_ref"])
		}
		r := must(t, e.do("POST", "/v1/template-warm-pools", e.dev, map[string]any{"name": "alias2", "template": "base"}), http.StatusCreated).json(t)
		if r["template_ref"] != "base" {
			t.Fatalf("template_ref %v", r["template_ref"])
		}
	})
	t.Run("track_tag from template_ref", func(t *testing.T) {
		p := e.createPool(e.dev, map[string]any{"name": "tracked", "template_ref": "echo:latest", "version_policy": "track_tag"})
		if p["version_policy"] != "track_tag" {
			t.Fatalf("%v", p)
		}
	})
}

func TestPatchPool(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{"name": "p", "min_ready": 2, "host_pool_id": "hp", "labels": map[string]any{"a": "1", "b": "2"}})
	id := p["id"].(string)
	path := "/v1/template-warm-pools/" + id

	r := must(t, e.do("PATCH", path, e.dev, map[string]any{"host_pool_id": nil, "labels": map[string]any{"c": "3"}}), http.StatusOK)
	got := r.json(t)
	if got["host_pool_id"] != nil {
		t.Errorf("null did not clear host_pool_id: %v", got["host_pool_id"])
	}
	if !reflect.DeepEqual(got["labels"], map[string]any{"c": "3"}) {
		t.Errorf("labels not replaced whole: %v", got["labels"])
	}
	if got["name"] != "p" || got["min_ready"] != 2.0 {
		t.Errorf("absent fields changed: %v", got)
	}
	if got["version"] != 2.0 || r.header.Get("ETag") != `"2"` {
		t.Errorf("version %v etag %q", got["version"], r.header.Get("ETag"))
	}

	// max_ready follows min_ready when they were equal.
	got = must(t, e.do("PATCH", path, e.dev, map[string]any{"min_ready": 5}), http.StatusOK).json(t)
	if got["max_ready"] != 5.0 {
		t.Errorf("max_ready %v, want 5 (follows min)", got["max_ready"])
	}
	got = must(t, e.do("PATCH", path, e.dev, map[string]any{"max_ready": 8}), http.StatusOK).json(t)
	got = must(t, e.do("PATCH", path, e.dev, map[string]any{"min_ready": 6}), http.StatusOK).json(t)
	if got["max_ready"] != 8.0 {
		t.Errorf("max_ready %v, want 8 (kept)", got["max_ready"])
	}

	// Prefer: return=minimal.
	r = must(t, e.do("PATCH", path, e.dev, map[string]any{"name": "q"}, header{"Prefer", "return=minimal"}), http.StatusNoContent)
	if len(r.body) != 0 || r.header.Get("ETag") == "" {
		t.Errorf("204 body %q etag %q", r.body, r.header.Get("ETag"))
	}

	// If-Match.
	cur := must(t, e.do("GET", path, e.dev, nil), http.StatusOK)
	version := cur.header.Get("ETag")
	must(t, e.do("PATCH", path, e.dev, map[string]any{"name": "stale"}, header{"If-Match", `"1"`}), http.StatusPreconditionFailed).errFields(t, standby.EPreconditionFailed)
	must(t, e.do("PATCH", path, e.dev, map[string]any{"name": "fresh"}, header{"If-Match", version}), http.StatusOK)
	must(t, e.do("POST", path+"/disable", e.dev, nil, header{"If-Match", version}), http.StatusPreconditionFailed)
	must(t, e.do("DELETE", path, e.dev, nil, header{"If-Match", version}), http.StatusPreconditionFailed)
	if got := must(t, e.do("GET", path, e.dev, nil), http.StatusOK).json(t); got["name"] != "fresh" || got["state"] != "enabled" {
		t.Fatalf("after 412s: %v", got)
	}

	// Re-resolve on template_ref change: generation 2, previous_* filled.
	got = must(t, e.do("PATCH", path, e.dev, map[string]any{"template_ref": "base"}), http.StatusOK).json(t)
	if got["rollout_generation"] != 2.0 || got["previous_resolved_template_build_id"] != p["resolved_template_build_id"] ||
		!strings.HasPrefix(got["resolved_template"].(string), "base@") {
		t.Errorf("after template_ref change: %v", got)
	}
	if e.ctrl.wokenPool(id) < 2 {
		t.Errorf("patch did not wake the pool")
	}
}

func TestPoolLifecycle(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{"name": "p", "min_ready": 1})
	id := p["id"].(string)
	path := "/v1/template-warm-pools/" + id
	steps := []struct {
		action, state, stamp string
	}{
		{"disable", "disabled", "disabled_at"},
		{"enable", "enabled", "enabled_at"},
		{"drain", "draining", "drain_requested_at"},
		{"reconcile", "draining", ""},
	}
	for _, s := range steps {
		got := must(t, e.do("POST", path+"/"+s.action, e.dev, nil), http.StatusOK).json(t)
		if got["state"] != s.state || (s.stamp != "" && got[s.stamp] == nil) {
			t.Fatalf("%s: %v", s.action, got)
		}
	}
	st := must(t, e.do("GET", path+"/status", e.viewer, nil), http.StatusOK).json(t)
	for _, k := range []string{"status", "rollout_status", "degraded_reason", "last_reconciled_at", "state"} {
		if _, ok := st[k]; !ok {
			t.Fatalf("status lacks %s: %v", k, st)
		}
	}
	must(t, e.do("POST", path+"/enable", e.dev, nil), http.StatusOK)
	sbID := checkoutOne(t, e, id, 1)
	must(t, e.do("DELETE", path, e.dev, nil), http.StatusNoContent)
	got := must(t, e.do("GET", path, e.dev, nil), http.StatusOK).json(t)
	if got["state"] != "deleted" || got["deleted_at"] == nil {
		t.Fatalf("deleted pool: %v", got)
	}
	list := must(t, e.do("GET", "/v1/template-warm-pools", e.dev, nil), http.StatusOK).json(t)
	if n := len(list["items"].([]any)); n != 0 {
		t.Fatalf("deleted pool listed: %v", list)
	}
	for _, a := range []string{"enable", "disable", "drain", "reconcile"} {
		must(t, e.do("POST", path+"/"+a, e.dev, nil), http.StatusConflict).errFields(t, standby.EConflict)
	}
	must(t, e.do("PATCH", path, e.dev, map[string]any{"name": "x"}), http.StatusConflict)
	if sb := must(t, e.do("GET", "/v1/sandboxes/"+sbID, e.dev, nil), http.StatusOK).json(t); sb["state"] != "running" {
		t.Fatalf("sandbox stopped by a delete without force: %v", sb["state"])
	}
	// force_delete stops running sandboxes of the pool.
	must(t, e.do("DELETE", path+"?force_delete=true", e.dev, nil), http.StatusNoContent)
	if sb := must(t, e.do("GET", "/v1/sandboxes/"+sbID, e.dev, nil), http.StatusOK).json(t); sb["state"] != "stopping" {
		t.Fatalf("sandbox after force delete: %v", sb["state"])
	}
	if e.ctrl.wokenSandbox(sbID) == 0 {
		t.Fatalf("sandbox not woken")
	}
}

// checkoutOne stores n ready instances and checks one out with require.
func checkoutOne(t *testing.T, e *env, poolID string, n int) string {
	t.Helper()
	e.addReady(poolID, n, nil)
	sb := must(t, e.do("POST", "/v1/sandboxes", e.dev, map[string]any{"warm_pool": map[string]any{"id": poolID, "mode": "require"}}), http.StatusCreated).json(t)
	return sb["id"].(string)
}

func TestInstances(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{"name": "p", "min_ready": 3})
	id := p["id"].(string)
	path := "/v1/template-warm-pools/" + id + "/instances"
	ids := e.addReady(id, 3, nil)

	list := must(t, e.do("GET", path+"?state=ready", e.viewer, nil), http.StatusOK).json(t)
	if n := len(list["items"].([]any)); n != 3 {
		t.Fatalf("%d ready instances listed", n)
	}
	must(t, e.do("GET", path+"?state=bogus", e.viewer, nil), http.StatusUnprocessableEntity)
	inst := must(t, e.do("GET", path+"/"+ids[0], e.viewer, nil), http.StatusOK).json(t)
	if inst["state"] != "ready" || inst["warm_pool_id"] != id {
		t.Fatalf("instance %v", inst)
	}

	labelCases := []struct {
		name, key string
		body      any
		status    int
		field     string
	}{
		{"ok", "region", map[string]any{"value": "eu-west.1"}, 200, ""},
		{"empty value ok", "flag", map[string]any{"value": ""}, 200, ""},
		{"key too long", strings.Repeat("k", 60), map[string]any{"value": "v"}, 422, "key"},
		{"key bad start", "-k", map[string]any{"value": "v"}, 422, "key"},
		{"value bad char", "k", map[string]any{"value": "a b"}, 422, "value"},
		{"value too long", "k", map[string]any{"value": strings.Repeat("v", 64)}, 422, "value"},
		{"value missing", "k", map[string]any{}, 422, "value"},
		{"value not a string", "k", map[string]any{"value": 1}, 422, "value"},
		{"unknown field", "k", map[string]any{"value": "v", "x": 1}, 422, "x"},
		{"malformed", "k", "{", 400, ""},
	}
	for _, tt := range labelCases {
		t.Run("label "+tt.name, func(t *testing.T) {
			r := must(t, e.do("PUT", path+"/"+ids[0]+"/labels/"+tt.key, e.dev, tt.body), tt.status)
			if tt.field != "" && !hasField(r.errFields(t, standby.EValidation), tt.field) {
				t.Fatalf("fields: %s", r.body)
			}
		})
	}
	got := must(t, e.do("GET", path+"/"+ids[0], e.dev, nil), http.StatusOK).json(t)
	if !reflect.DeepEqual(got["labels"], map[string]any{"region": "eu-west.1", "flag": ""}) {
		t.Fatalf("labels %v", got["labels"])
	}
	must(t, e.do("DELETE", path+"/"+ids[0]+"/labels/flag", e.dev, nil), http.StatusNoContent)
	// Annotations: free text values, label-rule keys.
	must(t, e.do("PUT", path+"/"+ids[0]+"/annotations/note", e.dev, map[string]any{"value": "any text: at all!"}), http.StatusOK)
	must(t, e.do("PUT", path+"/"+ids[0]+"/annotations/-bad", e.dev, map[string]any{"value": "x"}), http.StatusUnprocessableEntity)
	must(t, e.do("PUT", path+"/"+ids[0]+"/annotations/big", e.dev, map[string]any{"value": strings.Repeat("x", 64<<10+1)}), http.StatusUnprocessableEntity)
	got = must(t, e.do("GET", path+"/"+ids[0], e.dev, nil), http.StatusOK).json(t)
	if !reflect.DeepEqual(got["labels"], map[string]any{"region": "eu-west.1"}) || got["annotations"].(map[string]any)["note"] != "any text: at all!" {
		t.Fatalf("after edits: %v", got)
	}
	must(t, e.do("PUT", path+"/"+ids[0]+"/labels/x", e.viewer, map[string]any{"value": "v"}), http.StatusForbidden)
	must(t, e.do("GET", path+"/"+ids[0], e.otherDev, nil), http.StatusNotFound)

	// Delete: unclaimed → draining; claimed → 409 unless forced.
	must(t, e.do("DELETE", path+"/"+ids[1], e.dev, nil), http.StatusNoContent)
	if got := must(t, e.do("GET", path+"/"+ids[1], e.dev, nil), http.StatusOK).json(t); got["state"] != "draining" || got["reason"] != "deleted" {
		t.Fatalf("deleted instance: %v", got)
	}
	sb := must(t, e.do("POST", "/v1/sandboxes", e.dev, map[string]any{"warm_pool": map[string]any{"id": id, "mode": "require"}}), http.StatusCreated).json(t)
	claimed := sb["instance_id"].(string)
	must(t, e.do("DELETE", path+"/"+claimed, e.dev, nil), http.StatusConflict)
	must(t, e.do("DELETE", path+"/"+claimed+"?force_delete=true", e.dev, nil), http.StatusNoContent)
	if got := must(t, e.do("GET", "/v1/sandboxes/"+sb["id"].(string), e.dev, nil), http.StatusOK).json(t); got["state"] != "stopping" {
		t.Fatalf("sandbox of force-deleted instance: %v", got["state"])
	}
}

func TestPaging(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := range 7 {
		p := e.createPool(e.dev, map[string]any{"name": fmt.Sprintf("p%d", i)})
		want = append(want, p["id"].(string))
	}
	var got []string
	token, pages := "", 0
	for {
		path := "/v1/template-warm-pools?page_size=3"
		if token != "" {
			path += "&page_token=" + token
		}
		l := must(t, e.do("GET", path, e.viewer, nil), http.StatusOK).json(t)
		pages++
		for _, it := range l["items"].([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		if l["next_page_token"] == nil {
			break
		}
		token = l["next_page_token"].(string)
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, ids %v, want %v", pages, got, want)
	}
	for _, bad := range []string{"0", "1001", "x", "-1"} {
		r := must(t, e.do("GET", "/v1/template-warm-pools?page_size="+bad, e.viewer, nil), http.StatusUnprocessableEntity)
		if f := r.errFields(t, standby.EValidation); !hasField(f, "page_size") {
			t.Fatalf("page_size=%s: %v", bad, f)
		}
	}
	// Label filter.
	e.createPool(e.dev, map[string]any{"name": "lab", "labels": map[string]any{"tier": "gold"}})
	l := must(t, e.do("GET", "/v1/template-warm-pools?label=tier=gold", e.viewer, nil), http.StatusOK).json(t)
	if items := l["items"].([]any); len(items) != 1 || items[0].(map[string]any)["name"] != "lab" {
		t.Fatalf("label filter: %v", l)
	}
}
