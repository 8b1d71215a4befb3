package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// gatedBuild returns a build whose instances become ready (the echo server
// listens) only while the gate file exists, so a test can fill a pool and
// then make every refill slower than its burst.
func gatedBuild(gate string) map[string]any {
	return map[string]any{
		"start_cmd": []string{"sh", "-c", `while [ ! -e "$GATE" ]; do sleep 0.05; done; exec "$BIN" echo-server`},
		"env":       map[string]string{"GATE": gate, "BIN": standbyBin},
		"ports":     []map[string]string{{"name": "http"}},
		"readiness_health_check": map[string]any{
			"type": "http", "data": map[string]any{"endpoint": "/healthz", "timeout": 600},
		},
	}
}

func TestConcurrentRequireCheckoutsNeverDoubleHandOut(t *testing.T) {
	// The gate is a host file the instances look at: isolation would hide
	// it from them, so this test runs its instances as plain processes.
	s := startServer(t, "", "--isolation=none")
	gate := filepath.Join(t.TempDir(), "gate")
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.must(201, "POST", "/v1/templates", map[string]any{"name": "gated"}, nil)
	s.must(201, "POST", "/v1/templates/gated/builds", gatedBuild(gate), nil)
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{"name": "burst", "template_ref": "gated", "min_ready": 50}, &p)
	s.waitReady(p.ID, 50, 120*time.Second)
	// Close the gate: from now on refills stay warming for the whole burst.
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}

	const n = 200
	type result struct {
		code int
		sb   sandboxJSON
		errs struct {
			Errors []struct{ Code string }
		}
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var raw json.RawMessage
			code, err := s.try("POST", "/v1/sandboxes", map[string]any{"warm_pool": map[string]any{"id": p.ID, "mode": "require"}}, &raw)
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			results[i].code = code
			if code == 201 {
				err = json.Unmarshal(raw, &results[i].sb)
			} else {
				err = json.Unmarshal(raw, &results[i].errs)
			}
			if err != nil {
				t.Errorf("request %d: decode %s: %v", i, raw, err)
			}
		}()
	}
	close(start)
	wg.Wait()

	created, unavailable := 0, 0
	instances := map[string]string{}
	for i, r := range results {
		switch r.code {
		case 201:
			created++
			if prev, dup := instances[r.sb.InstanceID]; dup {
				t.Fatalf("instance %s handed out twice: sandboxes %s and %s", r.sb.InstanceID, prev, r.sb.ID)
			}
			instances[r.sb.InstanceID] = r.sb.ID
		case 503:
			if len(r.errs.Errors) != 1 || r.errs.Errors[0].Code != "warm_pool_unavailable" {
				t.Fatalf("request %d: 503 with %+v, want warm_pool_unavailable", i, r.errs)
			}
			unavailable++
		default:
			t.Fatalf("request %d: status %d", i, r.code)
		}
	}
	if created != 50 || unavailable != 150 {
		t.Fatalf("created %d, unavailable %d; want 50 and 150", created, unavailable)
	}
	p = s.pool(p.ID)
	if p.Status.Claimed != 50 || p.Status.Ready != 0 {
		t.Fatalf("status after burst = %+v, want 50 claimed, 0 ready", p.Status)
	}
}

func TestKilledInstanceIsReportedAndReplaced(t *testing.T) {
	s := startServer(t, "")
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{"name": "kill", "template_ref": "echo", "min_ready": 2}, &p)
	s.waitReady(p.ID, 2, 30*time.Second)
	victim := s.instances(p.ID)[0]
	pids := instancePIDs(s.dataDir, victim.ID)
	if len(pids) == 0 {
		t.Fatalf("no process found for instance %s", victim.ID)
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(t, 30*time.Second, "killed instance counted failed and replaced", func() bool {
		p = s.pool(p.ID)
		if p.Status.Failed < 1 || p.Status.Ready != 2 {
			return false
		}
		for _, in := range s.instances(p.ID) {
			if in.ID == victim.ID && in.State != "failed" {
				return false
			}
		}
		return true
	})
}

func TestTagMoveRollsPoolWhileClaimedSandboxKeepsRunning(t *testing.T) {
	s := startServer(t, "")
	echoBuild := map[string]any{
		"start_cmd":              []string{"standby", "echo-server"},
		"ports":                  []map[string]string{{"name": "http"}},
		"readiness_health_check": map[string]any{"type": "http", "data": map[string]any{"endpoint": "/healthz"}},
		"tags":                   []string{"stable"},
	}
	s.must(201, "POST", "/v1/templates", map[string]any{"name": "web"}, nil)
	var b1, b2 struct{ ID string }
	s.must(201, "POST", "/v1/templates/web/builds", echoBuild, &b1)
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{
		"name": "web", "template_ref": "web:stable", "version_policy": "track_tag", "min_ready": 2,
	}, &p)
	s.waitReady(p.ID, 2, 30*time.Second)
	var sb sandboxJSON
	s.must(201, "POST", "/v1/sandboxes", map[string]any{"warm_pool": map[string]any{"id": p.ID, "mode": "require"}}, &sb)
	if sb.TemplateBuildID != b1.ID {
		t.Fatalf("sandbox build %s, want %s", sb.TemplateBuildID, b1.ID)
	}

	echoBuild["env"] = map[string]string{"VERSION": "2"}
	s.must(201, "POST", "/v1/templates/web/builds", echoBuild, &b2) // moves "stable"
	waitFor(t, 60*time.Second, "pool rolled to the new build", func() bool {
		p = s.pool(p.ID)
		if p.ResolvedTemplateBuildID == nil || *p.ResolvedTemplateBuildID != b2.ID || p.RolloutStatus.Phase != "complete" || p.Status.Ready != 2 {
			return false
		}
		for _, in := range s.instances(p.ID) {
			if in.State == "ready" && in.TemplateBuildID != b2.ID {
				return false
			}
		}
		return true
	})
	if p.PreviousResolvedTemplateBuildID == nil || *p.PreviousResolvedTemplateBuildID != b1.ID ||
		p.PreviousResolvedTemplate == nil || *p.PreviousResolvedTemplate != "web@"+b1.ID || p.RolloutGeneration != 2 {
		t.Fatalf("previous_* not filled: %+v", p)
	}
	var got sandboxJSON
	s.must(200, "GET", "/v1/sandboxes/"+sb.ID, nil, &got)
	if got.State != "running" {
		t.Fatalf("claimed sandbox state %s after rollout", got.State)
	}
	answers(t, got)
	if p.Status.Claimed != 1 {
		t.Fatalf("claimed = %d, want 1", p.Status.Claimed)
	}
}

func TestFailingPoolBacksOff(t *testing.T) {
	s := startServer(t, "")
	s.must(201, "POST", "/v1/templates", map[string]any{"name": "broken"}, nil)
	s.must(201, "POST", "/v1/templates/broken/builds", map[string]any{"start_cmd": []string{"sh", "-c", "exit 3"}}, nil)
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{"name": "broken", "template_ref": "broken", "min_ready": 3}, &p)
	waitFor(t, 60*time.Second, "degraded_reason artifact_prewarm_failed", func() bool {
		p = s.pool(p.ID)
		return p.DegradedReason != nil && *p.DegradedReason == "artifact_prewarm_failed"
	})
	first := p.Status.Failed
	// A spinning controller would start (and fail) hundreds of instances a
	// second; with backoff the count over the next seconds stays small.
	time.Sleep(3 * time.Second)
	p = s.pool(p.ID)
	if grew := p.Status.Failed - first; grew > 3*3 {
		t.Fatalf("failed grew by %d in 3s after degrading: not backing off", grew)
	}
	if p.Status.Ready != 0 {
		t.Fatalf("ready = %d for a build that cannot start", p.Status.Ready)
	}
}

func TestRecordsSurviveRestartAndSandboxKeepsRunning(t *testing.T) {
	dataDir := t.TempDir()
	t.Cleanup(func() { killInstances(dataDir) })
	s := startServer(t, dataDir)
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{"name": "restart", "template_ref": "echo", "min_ready": 1, "labels": map[string]string{"team": "a"}}, &p)
	s.waitReady(p.ID, 1, 30*time.Second)
	var sb sandboxJSON
	s.must(201, "POST", "/v1/sandboxes", map[string]any{"template": "echo", "warm_pool": map[string]any{"id": p.ID}, "labels": map[string]string{"k": "v"}}, &sb)
	s.stop(syscall.SIGTERM)

	s2 := startServer(t, dataDir)
	var got sandboxJSON
	s2.must(200, "GET", "/v1/sandboxes/"+sb.ID, nil, &got)
	if got.State != "running" || got.InstanceID != sb.InstanceID {
		t.Fatalf("after restart sandbox = %+v", got)
	}
	answers(t, got)
	s2.waitReady(p.ID, 1, 30*time.Second)
}

func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	dataDir := t.TempDir()
	t.Cleanup(func() { killInstances(dataDir) })
	s := startServer(t, dataDir)
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{"name": "k9", "template_ref": "base", "min_ready": 20}, &p)
	s.waitReady(p.ID, 20, 60*time.Second)

	var mu sync.Mutex
	var acked []string      // sandbox ids whose create returned 201
	var ackedPools []string // pool ids whose create returned 201
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				var sb sandboxJSON
				code, err := s.try("POST", "/v1/sandboxes", map[string]any{"warm_pool": map[string]any{"id": p.ID, "mode": "require", "wait_ms": 50}}, &sb)
				if err != nil {
					return // the server is gone
				}
				if code == 201 {
					mu.Lock()
					acked = append(acked, sb.ID)
					mu.Unlock()
				}
				var np poolJSON
				code, err = s.try("POST", "/v1/template-warm-pools", map[string]any{"name": fmt.Sprintf("p-%d-%d", w, i), "template_ref": "base", "min_ready": 0}, &np)
				if err != nil {
					return
				}
				if code == 201 {
					mu.Lock()
					ackedPools = append(ackedPools, np.ID)
					mu.Unlock()
				}
			}
		}()
	}
	waitFor(t, 30*time.Second, "some writes acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 10 && len(ackedPools) >= 10
	})
	s.stop(syscall.SIGKILL)
	wg.Wait()

	s2 := startServer(t, dataDir)
	seen := map[string]bool{}
	for _, id := range acked {
		var got sandboxJSON
		if code := s2.do("GET", "/v1/sandboxes/"+id, nil, &got); code != 200 {
			t.Fatalf("acknowledged sandbox %s lost after kill -9 (status %d)", id, code)
		}
		if seen[got.InstanceID] {
			t.Fatalf("instance %s held by two sandboxes", got.InstanceID)
		}
		seen[got.InstanceID] = true
	}
	for _, id := range ackedPools {
		if code := s2.do("GET", "/v1/template-warm-pools/"+id, nil, nil); code != 200 {
			t.Fatalf("acknowledged pool %s lost after kill -9 (status %d)", id, code)
		}
	}
	t.Logf("%d sandboxes and %d pools acknowledged before kill -9; all present after restart", len(acked), len(ackedPools))
}
