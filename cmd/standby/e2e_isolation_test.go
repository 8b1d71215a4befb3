package main

import (
	"bytes"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestIsolatedSandboxOverHTTP drives an isolated sandbox through the real
// binary: files and artefacts paths cannot leave the sandbox (422), exec runs
// as an unprivileged uid, and a process killed for memory turns its sandbox
// failed with error oom_killed.
func TestIsolatedSandboxOverHTTP(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must cover isolation: run the tests as root")
		}
		t.Skip("isolation needs root (namespaces, cgroups, mounts); run the tests as root to cover it")
	}
	s := startServer(t, "")
	var hosts struct{ Items []struct{ Isolation string } }
	s.must(200, "GET", "/v1/hosts", nil, &hosts)
	if len(hosts.Items) != 1 || !strings.HasPrefix(hosts.Items[0].Isolation, "namespaces") {
		t.Fatalf("hosts = %+v, want one host with namespace isolation", hosts.Items)
	}

	s.must(201, "POST", "/v1/templates", map[string]any{"name": "hog"}, nil)
	s.must(201, "POST", "/v1/templates/hog/builds", map[string]any{
		// Waits for a trigger file, then eats memory until the OOM killer
		// stops it (tail buffers /dev/zero, which has no newline).
		"start_cmd": []string{"sh", "-c", "while [ ! -e go ]; do sleep 0.05; done; exec tail /dev/zero"},
		"resources": map[string]any{"memory_mb": 32},
	}, nil)
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{"name": "hog", "template_ref": "hog", "min_ready": 1}, &p)
	s.waitReady(p.ID, 1, 30*time.Second)
	var sb sandboxJSON
	s.must(201, "POST", "/v1/sandboxes", map[string]any{"warm_pool": map[string]any{"id": p.ID, "mode": "require"}}, &sb)
	base := "/v1/sandboxes/" + sb.ID

	var exec struct {
		ExitCode int    `json:"exit_code"`
		Stdout   string `json:"stdout"`
	}
	s.must(200, "POST", base+"/exec", map[string]any{"cmd": []string{"sh", "-c", "id -u; ln -s /etc/passwd link"}}, &exec)
	if exec.ExitCode != 0 || strings.TrimSpace(exec.Stdout) == "0" {
		t.Fatalf("exec = %+v, want success as a non-root uid", exec)
	}

	for _, tt := range []struct {
		method, path, field string
	}{
		{"PUT", base + "/files?path=../escape", "path"},
		{"PUT", base + "/files?path=/etc/passwd", "path"},
		{"GET", base + "/files?path=../../admin.key", "path"},
		{"GET", base + "/files?path=link", "path"},
		{"GET", base + "/artefacts/content?file_path=../../../admin.key", "file_path"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			var env struct {
				Errors []struct{ Code, Field string }
			}
			code, err := s.try(tt.method, tt.path, "x", &env)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusUnprocessableEntity || len(env.Errors) == 0 || env.Errors[0].Field != tt.field {
				t.Fatalf("status %d %+v, want 422 on %s", code, env, tt.field)
			}
		})
	}

	// The trigger file goes in through the files API; the sandbox then dies
	// of its memory limit and says so.
	req, _ := http.NewRequest("PUT", s.url+base+"/files?path=go", bytes.NewReader(nil))
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT trigger file: %d", resp.StatusCode)
	}
	var got struct {
		State string
		Error *string
	}
	waitFor(t, 30*time.Second, "sandbox failed with oom_killed", func() bool {
		s.must(200, "GET", base, nil, &got)
		return got.State == "failed"
	})
	if got.Error == nil || !strings.Contains(*got.Error, "oom_killed") {
		t.Fatalf("sandbox error = %v, want oom_killed", got.Error)
	}
}
