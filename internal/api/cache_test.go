package api

import (
	"net/http"
	"testing"

	"github.com/standbyhq/standby"
)

// TestCacheFollowsWrites checks that the cached keys and pools never serve
// a stale answer: each step first warms the cache with a request, then
// changes the record, then expects the change on the very next request.
func TestCacheFollowsWrites(t *testing.T) {
	e := newEnv(t)
	pool := e.createPool(e.dev, map[string]any{"name": "p", "min_ready": 1, "resources": map[string]any{"memory_mb": 256}})
	id := pool["id"].(string)
	checkout := func(key string) resp {
		return e.do("POST", "/v1/sandboxes", key, map[string]any{"warm_pool": map[string]any{"id": id, "mode": "require"}})
	}

	// A key used, revoked, used again.
	key := e.createKey(e.project, standby.RoleDeveloper)
	must(t, e.do("GET", "/v1/whoami", key, nil), http.StatusOK)
	keys, _, err := e.store.FindAPIKeys(t.Context(), standby.APIKeyFilter{ProjectID: e.project})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Hash == standby.HashKey(key) {
			must(t, e.do("DELETE", "/v1/api-keys/"+k.ID, e.admin, nil), http.StatusNoContent)
		}
	}
	must(t, e.do("GET", "/v1/whoami", key, nil), http.StatusUnauthorized)
	must(t, checkout(key), http.StatusUnauthorized)

	// A pool checked out from, patched, checked out from again.
	e.addReady(id, 2, nil)
	first := must(t, checkout(e.dev), http.StatusCreated).json(t)
	if mem := first["config"].(map[string]any)["memory_mb"]; mem != 256.0 {
		t.Fatalf("memory_mb %v, want 256", mem)
	}
	must(t, e.do("PATCH", "/v1/template-warm-pools/"+id, e.dev, map[string]any{"idle_timeout_seconds": 60}), http.StatusOK)
	second := must(t, checkout(e.dev), http.StatusCreated).json(t)
	if second["timeout_ms"] != 60000.0 {
		t.Fatalf("timeout_ms %v after the PATCH, want 60000", second["timeout_ms"])
	}

	// A template ref resolved, its tag moved, resolved again: the pool
	// still runs the old build, so the ref no longer matches it.
	e.addReady(id, 2, nil) // one left after the first: a stale answer would get it
	byRef := func() resp {
		return e.do("POST", "/v1/sandboxes", e.dev, map[string]any{"template": "echo", "warm_pool": map[string]any{"id": id, "mode": "require"}})
	}
	must(t, byRef(), http.StatusCreated)
	must(t, e.do("POST", "/v1/templates/echo/builds", e.dev, map[string]any{"start_cmd": []any{"standby", "echo-server"}}), http.StatusCreated)
	must(t, byRef(), http.StatusServiceUnavailable).errFields(t, standby.EWarmPoolUnavailable)

	// Another project's key never gets the cached pool.
	must(t, checkout(e.otherDev), http.StatusUnprocessableEntity).errFields(t, standby.EValidation)

	// A deleted pool is refused at once.
	must(t, e.do("DELETE", "/v1/template-warm-pools/"+id, e.dev, nil), http.StatusNoContent)
	fields := must(t, checkout(e.dev), http.StatusUnprocessableEntity).errFields(t, standby.EValidation)
	if len(fields) != 1 || fields[0] != "warm_pool.id" {
		t.Fatalf("fields %v", fields)
	}
}
