package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/standbyhq/standby"
)

func TestCheckoutModes(t *testing.T) {
	e := newEnv(t)
	warm := e.createPool(e.dev, map[string]any{"name": "warm", "min_ready": 2, "checkout_policy": "require"})
	wid := warm["id"].(string)
	warmRes := warm["resources"].(map[string]any)

	tests := []struct {
		name       string
		ready      int // ready instances stored before the request
		body       map[string]any
		status     int
		source     string // warm_pool or cold on success
		mode       string
		wantPoolID string
	}{
		{"require hit", 1, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "require"}}, 201, "warm_pool", "require", wid},
		{"pool default mode is its checkout_policy", 1, map[string]any{"warm_pool": map[string]any{"id": wid}}, 201, "warm_pool", "require", wid},
		{"require miss", 0, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "require"}}, 503, "", "", ""},
		{"prefer miss cold", 0, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "prefer"}}, 201, "cold", "prefer", wid},
		{"bypass cold with ready", 1, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "bypass"}}, 201, "cold", "bypass", wid},
		{"prefer by template over pools", 0, map[string]any{"template": "echo"}, 201, "warm_pool", "prefer", wid}, // uses the ready one left by bypass
		{"require env cannot be served", 1, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "require"}, "env": map[string]any{"A": "1"}}, 503, "", "", ""},
		{"prefer env falls back cold", 0, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "prefer"}, "env": map[string]any{"A": "1"}}, 201, "cold", "prefer", wid},
		{"require other resources", 0, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "require"}, "memory_mb": 77}, 503, "", "", ""},
		{"require other build", 0, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "require"}, "template": "base"}, 503, "", "", ""},
		{"require same resources", 0, map[string]any{"warm_pool": map[string]any{"id": wid, "mode": "require"}, "vcpus": warmRes["vcpus"], "memory_mb": warmRes["memory_mb"]}, 201, "warm_pool", "require", wid},
		{"no pool serves base: cold", 0, map[string]any{"template": "base"}, 201, "cold", "prefer", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.addReady(wid, tt.ready, nil)
			before := e.ctrl.coldStarts()
			r := must(t, e.do("POST", "/v1/sandboxes", e.dev, tt.body), tt.status)
			if tt.status == 503 {
				r.errFields(t, standby.EWarmPoolUnavailable)
				if r.header.Get("Retry-After") != "1" {
					t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
				}
				return
			}
			sb := r.json(t)
			wpc := sb["warm_pool_checkout"].(map[string]any)
			if wpc["source"] != tt.source || wpc["mode"] != tt.mode || (tt.wantPoolID != "" && wpc["id"] != tt.wantPoolID) {
				t.Fatalf("warm_pool_checkout %v", wpc)
			}
			if (tt.source == "warm_pool") != (wpc["hit"] == true) {
				t.Fatalf("hit %v for source %s", wpc["hit"], tt.source)
			}
			if cold := e.ctrl.coldStarts() - before; (tt.source == "cold") != (cold == 1) {
				t.Fatalf("%d cold starts for source %s", cold, tt.source)
			}
			for _, k := range []string{"id", "template", "template_build_id", "config", "state", "address", "ports", "host_id",
				"created_at", "started_at", "timeout_ms", "expires_at", "metadata", "labels", "annotations", "version"} {
				if _, ok := sb[k]; !ok {
					t.Fatalf("response lacks %s: %v", k, sb)
				}
			}
			if sb["state"] != "running" || r.header.Get("ETag") != `"1"` {
				t.Fatalf("state %v etag %q", sb["state"], r.header.Get("ETag"))
			}
			if tt.source == "warm_pool" {
				if sb["timeout_ms"] != 300000.0 {
					t.Fatalf("timeout_ms %v, want the pool's idle timeout", sb["timeout_ms"])
				}
				if e.ctrl.wokenPool(wid) == 0 {
					t.Fatalf("pool not woken after a checkout")
				}
			}
		})
	}
}

func TestCheckoutWaitsForReady(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{"name": "p", "min_ready": 1})
	id := p["id"].(string)
	done := make(chan resp, 1)
	go func() {
		done <- doRequest(t, e.http.URL, "POST", "/v1/sandboxes", e.dev, map[string]any{"warm_pool": map[string]any{"id": id, "mode": "require", "wait_ms": 30000}})
	}()
	// The request subscribes to the ready event before its first try, so
	// once it has subscribed, an instance stored and announced now is
	// either found by that try or by the retry the event triggers.
	waitFor(t, "the request to subscribe", func() bool { return e.ctrl.readySubscriptions() > 0 })
	select {
	case r := <-done:
		t.Fatalf("returned before any instance was ready: %d %s", r.status, r.body)
	default:
	}
	e.addReady(id, 1, nil)
	e.ctrl.fireReady()
	r := <-done
	must(t, r, http.StatusCreated)
	if wpc := r.json(t)["warm_pool_checkout"].(map[string]any); wpc["source"] != "warm_pool" {
		t.Fatalf("%v", wpc)
	}
}

func TestSelectorsOrder(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{"name": "p", "labels": map[string]any{"region": "eu"}})
	id := p["id"].(string)
	blue := e.addReady(id, 1, map[string]string{"color": "blue"})[0]
	red := e.addReady(id, 1, map[string]string{"color": "red"})[0]

	checkout := func(sel []map[string]any, mode string) resp {
		return e.do("POST", "/v1/sandboxes", e.dev, map[string]any{"warm_pool": map[string]any{"id": id, "mode": mode}, "selectors": sel})
	}
	sel := func(kv ...string) map[string]any {
		l := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return map[string]any{"labels": l}
	}
	// The first selector that matches anything wins, even though blue has
	// been ready longer.
	got := must(t, checkout([]map[string]any{sel("color", "green"), sel("color", "red"), sel("color", "blue")}, "require"), 201).json(t)
	if got["instance_id"] != red {
		t.Fatalf("got %v, want red %s", got["instance_id"], red)
	}
	// Pool labels count (overlaid by the instance's own).
	got = must(t, checkout([]map[string]any{sel("region", "eu", "color", "blue")}, "require"), 201).json(t)
	if got["instance_id"] != blue {
		t.Fatalf("got %v, want blue %s", got["instance_id"], blue)
	}
	e.addReady(id, 1, map[string]string{"color": "blue"})
	must(t, checkout([]map[string]any{sel("color", "red")}, "require"), 503).errFields(t, standby.EWarmPoolUnavailable)
	if got := must(t, checkout([]map[string]any{sel("color", "red")}, "prefer"), 201).json(t); got["warm_pool_checkout"].(map[string]any)["source"] != "cold" {
		t.Fatalf("prefer with no match: %v", got)
	}
	r := must(t, checkout([]map[string]any{sel("bad key!", "x")}, "require"), 422)
	if f := r.errFields(t, standby.EValidation); !hasField(f, "selectors[0].labels") {
		t.Fatalf("fields %v", f)
	}
}

// TestConcurrentRequireCheckouts: 200 require checkouts against exactly 50
// ready instances give exactly 50 distinct sandboxes and 150 × 503.
func TestConcurrentRequireCheckouts(t *testing.T) {
	e := newEnv(t)
	p := e.createPool(e.dev, map[string]any{"name": "p", "min_ready": 50})
	id := p["id"].(string)
	e.addReady(id, 50, nil)

	const n = 200
	var wg sync.WaitGroup
	results := make([]resp, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = doRequest(t, e.http.URL, "POST", "/v1/sandboxes", e.dev,
				map[string]any{"warm_pool": map[string]any{"id": id, "mode": "require"}})
		}()
	}
	close(start)
	wg.Wait()
	instances, sandboxes := map[string]bool{}, map[string]bool{}
	unavailable := 0
	for _, r := range results {
		switch r.status {
		case http.StatusCreated:
			sb := r.json(t)
			sandboxes[sb["id"].(string)] = true
			instances[sb["instance_id"].(string)] = true
		case http.StatusServiceUnavailable:
			r.errFields(t, standby.EWarmPoolUnavailable)
			unavailable++
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	}
	if len(sandboxes) != 50 || len(instances) != 50 || unavailable != 150 {
		t.Fatalf("%d sandboxes, %d instances, %d unavailable; want 50, 50, 150", len(sandboxes), len(instances), unavailable)
	}
	if e.ctrl.coldStarts() != 0 {
		t.Fatalf("require cold-started")
	}
}

func TestSandboxValidation(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name  string
		body  any
		field string
	}{
		{"template missing", map[string]any{}, "template"},
		{"template unknown", map[string]any{"template": "nosuch"}, "template"},
		{"template malformed", map[string]any{"template": "-x"}, "template"},
		{"pool unknown", map[string]any{"warm_pool": map[string]any{"id": "twp_nope"}}, "warm_pool.id"},
		{"mode bad", map[string]any{"template": "echo", "warm_pool": map[string]any{"mode": "x"}}, "warm_pool.mode"},
		{"wait_ms too big", map[string]any{"template": "echo", "warm_pool": map[string]any{"wait_ms": 60001}}, "warm_pool.wait_ms"},
		{"wait_ms negative", map[string]any{"template": "echo", "warm_pool": map[string]any{"wait_ms": -1}}, "warm_pool.wait_ms"},
		{"warm_pool unknown key", map[string]any{"template": "echo", "warm_pool": map[string]any{"size": 1}}, "warm_pool.size"},
		{"timeout_ms 0", map[string]any{"template": "echo", "timeout_ms": 0}, "timeout_ms"},
		{"timeout_ms too big", map[string]any{"template": "echo", "timeout_ms": standby.MaxTimeoutMS + 1}, "timeout_ms"},
		{"vcpus 0", map[string]any{"template": "echo", "vcpus": 0}, "vcpus"},
		{"env bad name", map[string]any{"template": "echo", "env": map[string]any{"1A": "x"}}, "env.1A"},
		{"label bad", map[string]any{"template": "echo", "labels": map[string]any{"k": "bad value"}}, "labels.k"},
		{"annotation key bad", map[string]any{"template": "echo", "annotations": map[string]any{"-k": "x"}}, "annotations.-k"},
		{"metadata not object", map[string]any{"template": "echo", "metadata": 3}, "metadata"},
		{"selectors wrong type", map[string]any{"template": "echo", "selectors": map[string]any{}}, "selectors"},
		{"unknown field", map[string]any{"template": "echo", "image": "x"}, "image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := must(t, e.do("POST", "/v1/sandboxes", e.dev, tt.body), http.StatusUnprocessableEntity)
			if f := r.errFields(t, standby.EValidation); !hasField(f, tt.field) {
				t.Fatalf("fields %v, want %q", f, tt.field)
			}
		})
	}
	items, _, err := e.store.FindSandboxes(context.Background(), standby.SandboxFilter{ProjectID: e.project})
	if err != nil || len(items) != 0 {
		t.Fatalf("sandboxes after 422s: %d %v", len(items), err)
	}
}

func TestSandboxLifecycle(t *testing.T) {
	e := newEnv(t)
	sb := must(t, e.do("POST", "/v1/sandboxes", e.dev, map[string]any{
		"template": "base", "timeout_ms": 5000, "metadata": map[string]any{"job": 1},
		"labels": map[string]any{"a": "1"}, "annotations": map[string]any{"note": "hello world"},
	}), http.StatusCreated).json(t)
	id := sb["id"].(string)
	path := "/v1/sandboxes/" + id
	if sb["timeout_ms"] != 5000.0 || sb["template"] != "base" {
		t.Fatalf("%v", sb)
	}
	// Labels.
	r := must(t, e.do("PUT", path+"/labels/b", e.dev, map[string]any{"value": "2"}), http.StatusOK)
	if got := r.json(t)["labels"].(map[string]any); got["a"] != "1" || got["b"] != "2" || r.header.Get("ETag") != `"2"` {
		t.Fatalf("labels %v etag %q", got, r.header.Get("ETag"))
	}
	must(t, e.do("PUT", path+"/labels/b", e.dev, map[string]any{"value": "no spaces"}), http.StatusUnprocessableEntity)
	must(t, e.do("PUT", path+"/labels/b", e.dev, map[string]any{"value": "3"}, header{"If-Match", `"1"`}), http.StatusPreconditionFailed)
	must(t, e.do("DELETE", path+"/labels/a", e.dev, nil), http.StatusNoContent)
	must(t, e.do("PUT", path+"/annotations/doc", e.dev, map[string]any{"value": "free text, any: chars"}), http.StatusOK)
	must(t, e.do("DELETE", path+"/annotations/note", e.dev, nil), http.StatusNoContent)
	got := must(t, e.do("GET", path, e.viewer, nil), http.StatusOK).json(t)
	if l, a := got["labels"].(map[string]any), got["annotations"].(map[string]any); len(l) != 1 || l["b"] != "2" || len(a) != 1 || a["doc"] == nil {
		t.Fatalf("labels %v annotations %v", l, a)
	}
	// Timeout.
	before := got["expires_at"].(string)
	got = must(t, e.do("POST", path+"/timeout", e.dev, map[string]any{"timeout_ms": 3_600_000}), http.StatusOK).json(t)
	if got["timeout_ms"] != 3_600_000.0 || got["expires_at"].(string) <= before {
		t.Fatalf("timeout: %v (before %s)", got, before)
	}
	must(t, e.do("POST", path+"/timeout", e.dev, map[string]any{"timeout_ms": 0}), http.StatusUnprocessableEntity)
	// Filters.
	for q, n := range map[string]int{"state=running": 1, "state=stopped": 0, "template=base": 1, "template=echo": 0, "label=b=2": 1, "label=b=3": 0} {
		l := must(t, e.do("GET", "/v1/sandboxes?"+q, e.viewer, nil), http.StatusOK).json(t)
		if got := len(l["items"].([]any)); got != n {
			t.Fatalf("?%s: %d items, want %d", q, got, n)
		}
	}
	// Delete → stopping; again → 204; timeout on it → 409.
	must(t, e.do("DELETE", path, e.dev, nil), http.StatusNoContent)
	if got := must(t, e.do("GET", path, e.dev, nil), http.StatusOK).json(t); got["state"] != "stopping" || e.ctrl.wokenSandbox(id) != 1 {
		t.Fatalf("after delete: %v", got["state"])
	}
	must(t, e.do("DELETE", path, e.dev, nil), http.StatusNoContent)
	must(t, e.do("POST", path+"/timeout", e.dev, map[string]any{"timeout_ms": 10}), http.StatusConflict)
	// Another project sees nothing.
	must(t, e.do("GET", path, e.otherDev, nil), http.StatusNotFound)
	must(t, e.do("DELETE", path, e.otherDev, nil), http.StatusNotFound)
}

// logAgent is a test double for the one Agent method the api uses.
type logAgent struct {
	standby.Agent
	more chan string
}

func (a *logAgent) Logs(ctx context.Context, id string, opt standby.LogOptions, w io.Writer) error {
	if !strings.HasPrefix(id, standby.PrefixInstance) {
		return standby.Errorf(standby.ENotFound, "no instance %s", id)
	}
	lines := []string{"one", "two", "three"}
	if opt.Tail > 0 && opt.Tail < len(lines) {
		lines = lines[len(lines)-opt.Tail:]
	}
	fmt.Fprintf(w, "%s:%s\n", opt.Stream, strings.Join(lines, ","))
	if !opt.Follow {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case s, ok := <-a.more:
			if !ok {
				return nil
			}
			fmt.Fprintln(w, s)
		}
	}
}

func TestSandboxLogs(t *testing.T) {
	e := newEnv(t)
	agent := &logAgent{more: make(chan string)}
	e.ctrl.agent = agent
	sb := must(t, e.do("POST", "/v1/sandboxes", e.dev, map[string]any{"template": "base"}), http.StatusCreated).json(t)
	path := "/v1/sandboxes/" + sb["id"].(string) + "/logs"
	r := must(t, e.do("GET", path+"?stream=stderr&tail=2", e.viewer, nil), http.StatusOK)
	if string(r.body) != "stderr:two,three\n" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("logs %q %q", r.body, r.header.Get("Content-Type"))
	}
	must(t, e.do("GET", path+"?stream=x", e.viewer, nil), http.StatusUnprocessableEntity)
	must(t, e.do("GET", path+"?tail=-1", e.viewer, nil), http.StatusUnprocessableEntity)

	// follow streams each line as it comes.
	req, _ := http.NewRequest("GET", e.http.URL+path+"?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+e.viewer)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := make([]byte, 64)
	read := func(want string) {
		t.Helper()
		var got string
		for !strings.Contains(got, want) {
			n, err := res.Body.Read(buf)
			if err != nil {
				t.Fatalf("read %q: %v (have %q)", want, err, got)
			}
			got += string(buf[:n])
		}
	}
	read("stdout:one,two,three\n")
	agent.more <- "four"
	read("four\n")
	close(agent.more)
}
