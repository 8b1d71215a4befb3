package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests build the real binary once and drive it over real HTTP, with
// the real SQLite store and real instance processes.

var standbyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "standby-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	standbyBin = filepath.Join(dir, "standby")
	build := exec.Command("go", "build", "-o", standbyBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build standby:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testAdminKey = "sbk_e2etestadminkey0000000000000000000000"

// server is a running `standby serve`.
type server struct {
	t       *testing.T
	dataDir string
	url     string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	done    chan struct{}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer runs the binary on dataDir (a new temp dir when empty) and
// waits until it answers. Instances it leaves behind are killed at cleanup.
func startServer(t *testing.T, dataDir string, extraArgs ...string) *server {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
		t.Cleanup(func() { killInstances(dataDir) })
	}
	port := freePort(t)
	s := &server{t: t, dataDir: dataDir, url: fmt.Sprintf("http://127.0.0.1:%d", port), log: &bytes.Buffer{}, done: make(chan struct{})}
	args := append([]string{"serve", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dataDir}, extraArgs...)
	s.cmd = exec.Command(standbyBin, args...)
	s.cmd.Env = append(os.Environ(), "STANDBY_ADMIN_KEY="+testAdminKey)
	s.cmd.Stdout, s.cmd.Stderr = &lockedWriter{w: s.log}, &lockedWriter{w: s.log}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("server log:\n%s", s.logText())
		}
	})
	waitFor(t, 30*time.Second, "server answers /healthz", func() bool {
		select {
		case <-s.done:
			t.Fatalf("server exited: %s", s.logText())
		default:
		}
		resp, err := http.Get(s.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return s
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (s *server) logText() string {
	lw := s.cmd.Stderr.(*lockedWriter)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.String()
}

// stop sends sig and waits for the process to exit.
func (s *server) stop(sig syscall.Signal) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do sends a request with the admin key and decodes a JSON response into
// out (when non-nil). It returns the status code.
func (s *server) do(method, path string, body any, out any, headers ...string) int {
	s.t.Helper()
	code, err := s.try(method, path, body, out, headers...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return code
}

func (s *server) try(method, path string, body any, out any, headers ...string) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %q: %w", data, err)
		}
	}
	return resp.StatusCode, nil
}

func (s *server) must(code int, method, path string, body any, out any) {
	s.t.Helper()
	var raw json.RawMessage
	got := s.do(method, path, body, &raw)
	if got != code {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, code, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			s.t.Fatalf("decode: %v", err)
		}
	}
}

type poolJSON struct {
	ID                              string  `json:"id"`
	State                           string  `json:"state"`
	ResolvedTemplateBuildID         *string `json:"resolved_template_build_id"`
	PreviousResolvedTemplateBuildID *string `json:"previous_resolved_template_build_id"`
	PreviousResolvedTemplate        *string `json:"previous_resolved_template"`
	RolloutGeneration               int64   `json:"rollout_generation"`
	DegradedReason                  *string `json:"degraded_reason"`
	RolloutStatus                   struct {
		Phase         string         `json:"phase"`
		CurrentCounts map[string]int `json:"current_counts"`
	} `json:"rollout_status"`
	Status struct {
		Target, Ready, Warming, Claimed, Draining, Failed, Expired, Unavailable int
	} `json:"status"`
	LastReconciledAt *time.Time `json:"last_reconciled_at"`
}

type sandboxJSON struct {
	ID               string         `json:"id"`
	State            string         `json:"state"`
	Address          string         `json:"address"`
	Ports            map[string]int `json:"ports"`
	InstanceID       string         `json:"instance_id"`
	TemplateBuildID  string         `json:"template_build_id"`
	WarmPoolCheckout struct {
		Source string `json:"source"`
		Hit    bool   `json:"hit"`
		ID     string `json:"id"`
		Mode   string `json:"mode"`
	} `json:"warm_pool_checkout"`
}

type instanceJSON struct {
	ID              string `json:"id"`
	State           string `json:"state"`
	TemplateBuildID string `json:"template_build_id"`
}

func (s *server) pool(id string) poolJSON {
	s.t.Helper()
	var p poolJSON
	s.must(200, "GET", "/v1/template-warm-pools/"+id, nil, &p)
	return p
}

func (s *server) instances(poolID string) []instanceJSON {
	s.t.Helper()
	var list struct{ Items []instanceJSON }
	s.must(200, "GET", "/v1/template-warm-pools/"+poolID+"/instances?page_size=1000", nil, &list)
	return list.Items
}

func (s *server) waitReady(poolID string, n int, timeout time.Duration) poolJSON {
	s.t.Helper()
	var p poolJSON
	waitFor(s.t, timeout, fmt.Sprintf("pool %s has %d ready", poolID, n), func() bool {
		p = s.pool(poolID)
		return p.Status.Ready >= n
	})
	return p
}

// answers checks that the sandbox's http port serves the echo server.
func answers(t *testing.T, sb sandboxJSON) {
	t.Helper()
	port := sb.Ports["http"]
	if port == 0 {
		t.Fatalf("sandbox %s has no http port: %+v", sb.ID, sb)
	}
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/hello", sb.Address, port))
	if err != nil {
		t.Fatalf("sandbox %s port does not answer: %v", sb.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("sandbox %s answered %d", sb.ID, resp.StatusCode)
	}
}

func TestQuickstartEchoPool(t *testing.T) {
	s := startServer(t, "")
	var p poolJSON
	s.must(201, "POST", "/v1/template-warm-pools", map[string]any{"name": "echo-pool", "template_ref": "echo", "min_ready": 3}, &p)
	s.waitReady(p.ID, 3, 30*time.Second)

	var sb sandboxJSON
	s.must(201, "POST", "/v1/sandboxes", map[string]any{"warm_pool": map[string]any{"id": p.ID, "mode": "require"}}, &sb)
	if sb.State != "running" || sb.WarmPoolCheckout.Source != "warm_pool" || !sb.WarmPoolCheckout.Hit {
		t.Fatalf("sandbox = %+v, want a running warm-pool hit", sb)
	}
	answers(t, sb)
	// The pool refills to three ready while the sandbox stays claimed.
	waitFor(t, 30*time.Second, "refill to 3 ready with 1 claimed", func() bool {
		p = s.pool(p.ID)
		return p.Status.Ready == 3 && p.Status.Claimed == 1
	})
	if p.LastReconciledAt == nil {
		t.Fatal("last_reconciled_at not set")
	}
	s.must(204, "DELETE", "/v1/sandboxes/"+sb.ID, nil, nil)
	waitFor(t, 30*time.Second, "sandbox stopped", func() bool {
		var got sandboxJSON
		s.must(200, "GET", "/v1/sandboxes/"+sb.ID, nil, &got)
		return got.State == "stopped" && len(instancePIDs(s.dataDir, sb.InstanceID)) == 0
	})
}
