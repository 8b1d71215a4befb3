package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/internal/store/sqlite"
)

// testController is the api's view of the controller for tests: it records
// wakes, lets a test fire the ready event, and cold-starts by storing an
// instance row and the sandbox claiming it (the real controller is tested
// in its own package).
type testController struct {
	store standby.Store
	agent standby.Agent

	mu        sync.Mutex
	ready     chan struct{}
	pools     map[string]int
	sandboxes map[string]int
	all       int
	colds     int
	readyGets int
	// coldErr, when set, is what ColdStart fails with.
	coldErr error
}

func newTestController(s standby.Store) *testController {
	return &testController{store: s, ready: make(chan struct{}), pools: map[string]int{}, sandboxes: map[string]int{}}
}

func (c *testController) WakePool(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pools[id]++
}

// PoolCheckedOut counts as a wake of the pool: either one makes the
// controller look at it.
func (c *testController) PoolCheckedOut(id string) { c.WakePool(id) }

func (c *testController) WakeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.all++
}

func (c *testController) WakeSandbox(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sandboxes[id]++
}

func (c *testController) Ready() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readyGets++
	return c.ready
}

func (c *testController) readySubscriptions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readyGets
}

// fireReady closes the current ready channel, as an instance-ready event
// would.
func (c *testController) fireReady() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ready)
	c.ready = make(chan struct{})
}

func (c *testController) wokenPool(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pools[id]
}

func (c *testController) wokenSandbox(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sandboxes[id]
}

func (c *testController) wokenAll() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all
}

func (c *testController) ColdStart(ctx context.Context, sb *standby.Sandbox, build *standby.Build, env map[string]string) (*standby.Sandbox, error) {
	c.mu.Lock()
	c.colds++
	coldErr := c.coldErr
	c.mu.Unlock()
	if coldErr != nil {
		return nil, coldErr
	}
	now := standby.Now()
	inst := &standby.Instance{
		ID: standby.NewID(standby.PrefixInstance), ProjectID: sb.ProjectID, State: standby.InstanceReady,
		TemplateBuildID: build.ID, HostID: "host_test", Address: "127.0.0.1",
		Ports: map[string]int{}, Labels: map[string]string{}, Annotations: map[string]string{},
		CreatedAt: now, ReadyAt: &now,
	}
	if err := c.store.CreateInstance(ctx, inst); err != nil {
		return nil, err
	}
	sb.InstanceID, sb.HostID, sb.Address = inst.ID, inst.HostID, inst.Address
	if err := c.store.CreateSandbox(ctx, sb); err != nil {
		return nil, err
	}
	return sb, nil
}

func (c *testController) Agent(hostID string) (standby.Agent, bool) {
	if c.agent == nil || hostID != "host_test" {
		return nil, false
	}
	return c.agent, true
}

func (c *testController) coldStarts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.colds
}

// env is one API server over a real SQLite store, with keys of every role
// in project "default" and a developer key in project "other".
type env struct {
	t        *testing.T
	store    *sqlite.Store
	ctrl     *testController
	srv      *Server
	http     *httptest.Server
	project  string // default project id
	other    string // other project id
	admin    string
	dev      string
	viewer   string
	otherDev string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "db")})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, ctrl: newTestController(st)}
	srv, err := New(Config{Store: st, Controller: e.ctrl, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(e.http.Close)

	e.project = e.createProject("default")
	e.other = e.createProject("other")
	e.admin = e.createKey(e.project, standby.RoleAdmin)
	e.dev = e.createKey(e.project, standby.RoleDeveloper)
	e.viewer = e.createKey(e.project, standby.RoleViewer)
	e.otherDev = e.createKey(e.other, standby.RoleDeveloper)
	return e
}

func (e *env) createProject(name string) string {
	e.t.Helper()
	p := &standby.Project{Name: name}
	if err := standby.CreateProjectWithBuiltins(context.Background(), e.store, p, standby.Now()); err != nil {
		e.t.Fatalf("create project: %v", err)
	}
	return p.ID
}

func (e *env) createKey(project, role string) string {
	e.t.Helper()
	secret := standby.NewKeySecret()
	k := &standby.APIKey{ID: standby.NewID(standby.PrefixAPIKey), ProjectID: project, Name: role, Role: role,
		Hash: standby.HashKey(secret), Prefix: secret[:8], CreatedAt: standby.Now()}
	if err := e.store.CreateAPIKey(context.Background(), k); err != nil {
		e.t.Fatalf("create key: %v", err)
	}
	return secret
}

// resp is a decoded HTTP response.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map.
func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %d body %q: %v", r.status, r.body, err)
	}
	return m
}

// errFields returns the field of each error entry, and fails unless every
// entry has the code.
func (r resp) errFields(t *testing.T, code string) []string {
	t.Helper()
	var env errorEnvelope
	if err := json.Unmarshal(r.body, &env); err != nil {
		t.Fatalf("decode error body %q: %v", r.body, err)
	}
	if len(env.Errors) == 0 {
		t.Fatalf("no error entries in %s", r.body)
	}
	var fields []string
	for _, e := range env.Errors {
		if e.Code != code {
			t.Fatalf("error code %q, want %q: %s", e.Code, code, r.body)
		}
		if e.Title != http.StatusText(r.status) {
			t.Fatalf("title %q, want %q", e.Title, http.StatusText(r.status))
		}
		fields = append(fields, e.Field)
	}
	return fields
}

// header is one request header for do.
type header struct{ k, v string }

// do sends a request with the key; body is a string (sent as is) or any
// value (sent as JSON).
func (e *env) do(method, path, key string, body any, headers ...header) resp {
	e.t.Helper()
	return doRequest(e.t, e.http.URL, method, path, key, body, headers...)
}

func doRequest(t *testing.T, base, method, path, key string, body any, headers ...header) resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		req.Header.Set(h.k, h.v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// must fails unless the response has the status, and returns it.
func must(t *testing.T, r resp, status int) resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// createPool creates a pool of template echo (or what body says) and
// returns its decoded body.
func (e *env) createPool(key string, body map[string]any) map[string]any {
	e.t.Helper()
	if _, ok := body["template_ref"]; !ok {
		body["template_ref"] = "echo"
	}
	return must(e.t, e.do("POST", "/v1/template-warm-pools", key, body), http.StatusCreated).json(e.t)
}

// addReady stores n ready instances of the pool directly, as the controller
// would after their readiness checks.
func (e *env) addReady(poolID string, n int, labels map[string]string) []string {
	e.t.Helper()
	ctx := context.Background()
	p, err := e.store.FindWarmPool(ctx, poolID)
	if err != nil {
		e.t.Fatalf("find pool: %v", err)
	}
	var ids []string
	for i := 0; i < n; i++ {
		now := standby.Now()
		l := map[string]string{}
		for k, v := range labels {
			l[k] = v
		}
		inst := &standby.Instance{
			ID: standby.NewID(standby.PrefixInstance), ProjectID: p.ProjectID, PoolID: p.ID, State: standby.InstanceReady,
			TemplateBuildID: *p.ResolvedTemplateBuildID, HostID: "host_test", Address: "127.0.0.1",
			Ports: map[string]int{"http": 40000 + i}, Labels: l, Annotations: map[string]string{},
			RolloutGeneration: p.RolloutGeneration, CreatedAt: now, ReadyAt: &now,
		}
		if err := e.store.CreateInstance(ctx, inst); err != nil {
			e.t.Fatalf("create instance: %v", err)
		}
		ids = append(ids, inst.ID)
	}
	return ids
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
