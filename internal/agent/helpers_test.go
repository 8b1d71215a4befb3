package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// helperExe is the test stand-in for the standby binary, built once.
var helperExe string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agenttest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helperExe = filepath.Join(dir, "standbytest")
	out, err := exec.Command("go", "build", "-o", helperExe, "./testdata/standbytest").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build test helper: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 20 * time.Second

// testAgent is an agent running in the background with its events
// collected.
type testAgent struct {
	*Local
	dataDir string
	cancel  context.CancelFunc
	done    chan struct{}

	mu     sync.Mutex
	events []standby.InstanceEvent
	notify chan struct{}
}

// startAgent runs an agent on dataDir (a new temp dir when ""). Cleanup
// stops its instances, unless the test shut the agent down itself.
func startAgent(t testing.TB, dataDir string, mod func(*Config)) *testAgent {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	// The process tests run without isolation; isolation_test.go turns it on.
	cfg := Config{DataDir: dataDir, HostID: "host_test", Name: "test", SelfExe: helperExe, StopGrace: 2 * time.Second, Isolation: IsolationNone}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Local: a, dataDir: dataDir, cancel: cancel, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	go func() {
		defer close(ta.done)
		for ev := range a.Events() {
			ta.mu.Lock()
			ta.events = append(ta.events, ev)
			ta.mu.Unlock()
			select {
			case ta.notify <- struct{}{}:
			default:
			}
		}
		<-runDone
	}()
	t.Cleanup(func() {
		select {
		case <-ta.done:
			return
		default:
		}
		list, _ := a.Instances(context.Background())
		for _, in := range list {
			if err := a.StopInstance(context.Background(), in.ID); err != nil {
				t.Errorf("cleanup: stop %s: %v", in.ID, err)
			}
		}
		ta.shutdown(t)
	})
	return ta
}

// shutdown ends Run and waits until it returned and Events was closed.
func (ta *testAgent) shutdown(t testing.TB) {
	t.Helper()
	ta.cancel()
	select {
	case <-ta.done:
	case <-time.After(waitTimeout):
		t.Fatal("agent did not stop")
	}
}

// waitEvent waits for an event of typ about id and returns it.
func (ta *testAgent) waitEvent(t *testing.T, id, typ string) standby.InstanceEvent {
	t.Helper()
	find := func() (standby.InstanceEvent, bool) {
		for _, ev := range ta.eventsOf(id) {
			if ev.Type == typ {
				return ev, true
			}
		}
		return standby.InstanceEvent{}, false
	}
	deadline := time.After(waitTimeout)
	for {
		if ev, ok := find(); ok {
			return ev
		}
		select {
		case <-ta.notify:
		case <-ta.done:
			if ev, ok := find(); ok {
				return ev
			}
			t.Fatalf("agent stopped without a %s event for %s; got %+v", typ, id, ta.eventsOf(id))
		case <-deadline:
			t.Fatalf("no %s event for %s; got %+v", typ, id, ta.eventsOf(id))
		}
	}
}

func (ta *testAgent) eventsOf(id string) []standby.InstanceEvent {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	var out []standby.InstanceEvent
	for _, ev := range ta.events {
		if ev.InstanceID == id {
			out = append(out, ev)
		}
	}
	return out
}

// start starts an instance of b with a fresh id.
func (ta *testAgent) start(t *testing.T, b *standby.Build, env map[string]string) standby.InstanceInfo {
	t.Helper()
	info, err := ta.StartInstance(context.Background(), standby.InstanceSpec{ID: standby.NewID(standby.PrefixInstance), Build: b, Env: env})
	if err != nil {
		t.Fatalf("StartInstance: %v", err)
	}
	return info
}

// root is a host path of the running instance id's root: its dir in the
// run dir, or, isolated, the path of the agent's descriptor of its mount.
func (ta *testAgent) root(id string) string {
	if inst := ta.runningInst(id); inst != nil && inst.iso != nil {
		return fdPath(inst.rootFD)
	}
	return filepath.Join(ta.dataDir, "run", id)
}

func (ta *testAgent) statePath(id string) string {
	return filepath.Join(ta.dataDir, "run", id+stateSuffix)
}

// waitUntil polls cond until it holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// running reports whether pid runs the process it did at startTick.
func running(pid int, startTick uint64) bool { return !procGone(pid, startTick) }

func startTickOf(t *testing.T, pid int) uint64 {
	t.Helper()
	st, err := readStat(pid)
	if err != nil {
		t.Fatalf("stat %d: %v", pid, err)
	}
	return st.startTime
}

// groupMembers lists the live processes of the group pgid.
func groupMembers(pgid int) map[int]uint64 {
	out := map[int]uint64{}
	names, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, n := range names {
		var pid int
		if _, err := fmt.Sscanf(n, "/proc/%d/stat", &pid); err != nil {
			continue
		}
		st, err := readStat(pid)
		if err == nil && st.pgrp == pgid && !st.dead() {
			out[pid] = st.startTime
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func echoBuild() *standby.Build {
	for _, bt := range standby.BuiltinTemplates() {
		if bt.Template.Name == "echo" {
			b := bt.Build
			return &b
		}
	}
	panic("no echo builtin")
}

func shBuild(script string) *standby.Build {
	return &standby.Build{
		StartCmd:             []string{"sh", "-c", script},
		ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckProcess},
	}
}
