// Package storetest is the conformance suite of standby.Store: every
// implementation runs it unchanged from its own tests with
//
//	storetest.Run(t, func(t *testing.T) standby.Store { … })
//
// It checks each method and each promise of the Store's doc comments, the
// last-hour status counts, checkout selection, and that concurrent
// checkouts never hand out an instance twice.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// Run runs the suite. newStore must return a new, empty store and arrange
// its Close with t.Cleanup; it is called once per subtest.
func Run(t *testing.T, newStore func(t *testing.T) standby.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s standby.Store)
	}{
		{"Projects", testProjects},
		{"ProjectsPaging", testProjectsPaging},
		{"APIKeys", testAPIKeys},
		{"Templates", testTemplates},
		{"Builds", testBuilds},
		{"BuildsPaging", testBuildsPaging},
		{"Tags", testTags},
		{"DeleteTemplate", testDeleteTemplate},
		{"WarmPools", testWarmPools},
		{"WarmPoolFilters", testWarmPoolFilters},
		{"WarmPoolStatusCounts", testWarmPoolStatusCounts},
		{"SetWarmPoolStatus", testSetWarmPoolStatus},
		{"Instances", testInstances},
		{"InstanceFilters", testInstanceFilters},
		{"DeleteFailedInstances", testDeleteFailedInstances},
		{"Checkout", testCheckout},
		{"CheckoutSelectors", testCheckoutSelectors},
		{"CheckoutFills", testCheckoutFills},
		{"CheckoutConcurrent", testCheckoutConcurrent},
		{"CreateSandbox", testCreateSandbox},
		{"Sandboxes", testSandboxes},
		{"SandboxFilters", testSandboxFilters},
		{"Hosts", testHosts},
		{"Idempotency", testIdempotency},
		{"UpdateAborts", testUpdateAborts},
		{"NotFound", testNotFound},
		{"BadPageToken", testBadPageToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// ---- assertions ----

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if !standby.IsCode(err, code) {
		t.Fatalf("got error %v (code %q), want code %q", err, standby.ErrorCode(err), code)
	}
}

// equal fails unless got and want are deeply equal (times included: the
// store must round-trip UTC microsecond times exactly).
func equal[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("%s:\n got %s\n     %#v\nwant %s\n     %#v", what, g, got, w, want)
	}
}

// ---- fixtures ----

// ids returns n new ids of a kind in creation (sort) order: ids made in the
// same millisecond are random among themselves, so the suite sorts them.
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = standby.NewID(prefix)
	}
	slices.Sort(out)
	return out
}

// base is a fixed recent time, so tests do not depend on the wall clock
// except where the store itself reads it (last-hour counts).
func base() time.Time { return standby.Now().Add(-time.Minute) }

func newProject(t *testing.T, s standby.Store, name string) *standby.Project {
	t.Helper()
	now := base()
	p := &standby.Project{ID: standby.NewID(standby.PrefixProject), Name: name, Version: 1, CreatedAt: now, UpdatedAt: now}
	must(t, s.CreateProject(t.Context(), p))
	return p
}

func newTemplate(t *testing.T, s standby.Store, projectID, name string, labels map[string]string) *standby.Template {
	t.Helper()
	now := base()
	tpl := &standby.Template{ID: standby.NewID(standby.PrefixTemplate), ProjectID: projectID, Name: name, Description: "d " + name,
		Labels: labels, Version: 1, CreatedAt: now, UpdatedAt: now}
	must(t, s.CreateTemplate(t.Context(), tpl))
	return tpl
}

func buildOf(projectID, template string, tags ...string) *standby.Build {
	b := &standby.Build{
		ID: standby.NewID(standby.PrefixBuild), ProjectID: projectID, Template: template, Status: standby.BuildReady,
		StartCmd: []string{"standby", "echo-server", "--port", "${PORT}"},
		Env:      map[string]string{"A": "1", "B": "two"},
		Workdir:  "app",
		Files:    map[string]string{"app/conf.txt": "x=1\n"},
		Ports:    []standby.Port{{Name: "http"}, {Name: "admin"}},
		HealthCheck: &standby.HealthCheck{Type: standby.CheckPort,
			Data: standby.HealthCheckData{Timeout: 5, InvocationTimeout: 1, Interval: 2}},
		ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckHTTP,
			Data: standby.HealthCheckData{Timeout: 30, Endpoint: "/healthz"}},
		Resources: standby.Resources{VCPUs: 0.5, MemoryMB: 256, DiskMB: 1024},
		Tags:      tags,
		CreatedAt: base(),
	}
	b.Seal()
	return b
}

func newBuild(t *testing.T, s standby.Store, projectID, template string, tags ...string) *standby.Build {
	t.Helper()
	b := buildOf(projectID, template, tags...)
	must(t, s.CreateBuild(t.Context(), b))
	return b
}

func poolOf(projectID string, b *standby.Build, name string) *standby.WarmPool {
	now := base()
	p := &standby.WarmPool{
		ID: standby.NewID(standby.PrefixWarmPool), ProjectID: projectID, Name: name, TemplateRef: b.Template,
		MinReady: 2, MaxReady: 4, Resources: b.Resources, CreatedAt: now, UpdatedAt: now, EnabledAt: &now,
		RolloutStatus: standby.RolloutStatus{CurrentCounts: map[string]int{}},
	}
	p.ApplyDefaults()
	p.SetResolvedBuild(b)
	return p
}

func newPool(t *testing.T, s standby.Store, projectID string, b *standby.Build, name string, edit func(*standby.WarmPool)) *standby.WarmPool {
	t.Helper()
	p := poolOf(projectID, b, name)
	if edit != nil {
		edit(p)
	}
	must(t, s.CreateWarmPool(t.Context(), p))
	return p
}

// instanceOf returns an instance of a pool (or none when pool is nil) in
// state; ready instances get ReadyAt = base()+readyOffset.
func instanceOf(projectID string, pool *standby.WarmPool, buildID, state string, readyOffset time.Duration) *standby.Instance {
	now := base()
	i := &standby.Instance{
		ID: standby.NewID(standby.PrefixInstance), ProjectID: projectID, State: state, TemplateBuildID: buildID,
		HostID: "host_local", Address: "127.0.0.1", Ports: map[string]int{"http": 40000, "admin": 40001},
		Labels: map[string]string{}, Annotations: map[string]string{}, CreatedAt: now.Add(-time.Hour),
	}
	if pool != nil {
		i.PoolID, i.RolloutGeneration = pool.ID, pool.RolloutGeneration
	}
	if state == standby.InstanceReady || state == standby.InstanceClaimed {
		r := now.Add(readyOffset)
		i.ReadyAt = &r
	}
	return i
}

func newInstance(t *testing.T, s standby.Store, projectID string, pool *standby.WarmPool, buildID, state string, readyOffset time.Duration, edit func(*standby.Instance)) *standby.Instance {
	t.Helper()
	i := instanceOf(projectID, pool, buildID, state, readyOffset)
	if edit != nil {
		edit(i)
	}
	must(t, s.CreateInstance(t.Context(), i))
	return i
}

func sandboxOf(projectID, template string) *standby.Sandbox {
	now := base()
	return &standby.Sandbox{
		ID: standby.NewID(standby.PrefixSandbox), ProjectID: projectID, Template: template,
		Config: standby.Resources{VCPUs: 0.5, MemoryMB: 256, DiskMB: 1024}, State: standby.SandboxRunning,
		CreatedAt: now, StartedAt: now, TimeoutMS: 300_000, ExpiresAt: now.Add(5 * time.Minute),
		WarmPoolCheckout: standby.WarmPoolCheckout{Source: standby.SourceWarmPool, Mode: standby.ModeRequire},
	}
}

// world is a project with a template, a build and an enabled pool.
type world struct {
	project *standby.Project
	build   *standby.Build
	pool    *standby.WarmPool
}

func newWorld(t *testing.T, s standby.Store) world {
	t.Helper()
	p := newProject(t, s, "p-"+standby.NewSecret(6))
	newTemplate(t, s, p.ID, "echo", nil)
	b := newBuild(t, s, p.ID, "echo")
	pool := newPool(t, s, p.ID, b, "pool-a", nil)
	return world{p, b, pool}
}

// listAll pages through a list with the given page size and returns every
// record, failing when a page is larger than asked or a token repeats.
func listAll[T any](t *testing.T, size int, list func(page standby.Page) ([]T, string, error)) []T {
	t.Helper()
	var out []T
	token := ""
	seen := map[string]bool{}
	for {
		items, next, err := list(standby.Page{Size: size, Token: token})
		must(t, err)
		if items == nil {
			t.Fatalf("list returned a nil slice")
		}
		if len(items) > size {
			t.Fatalf("page has %d items, asked for %d", len(items), size)
		}
		if next != "" && len(items) != size {
			t.Fatalf("page of %d items (size %d) has a next token", len(items), size)
		}
		out = append(out, items...)
		if next == "" {
			return out
		}
		if seen[next] {
			t.Fatalf("page token %q repeats", next)
		}
		seen[next] = true
		token = next
	}
}

func idsOf[T any](items []T, id func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = id(it)
	}
	return out
}

// errStop is returned from Update* functions to check that they abort.
var errStop = errors.New("storetest: stop")

func ctxOf(t *testing.T) context.Context { return t.Context() }

func name(prefix string, i int) string { return fmt.Sprintf("%s-%02d", prefix, i) }
