package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/internal/echo"
)

func TestStartEchoReady(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "", nil)
	info := a.start(t, echoBuild(), nil)
	port := info.Ports["http"]
	if port == 0 || info.Address != "127.0.0.1" || info.PID == 0 || info.Ready {
		t.Fatalf("info = %+v", info)
	}
	ev := a.waitEvent(t, info.ID, standby.EventReady)
	if ev.HostID != "host_test" || ev.At.IsZero() {
		t.Errorf("ready event = %+v", ev)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/hello?x=1", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got echo.Request
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.InstanceID != info.ID || got.Path != "/hello" || got.Query["x"][0] != "1" {
		t.Errorf("echo = %+v", got)
	}

	list, err := a.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != info.ID || !list[0].Ready || list[0].Ports["http"] != port {
		t.Errorf("Instances = %+v", list)
	}
	var st stateFile
	if err := json.Unmarshal([]byte(readFile(t, a.statePath(info.ID))), &st); err != nil {
		t.Fatal(err)
	}
	if st.PID != info.PID || st.StartTick != startTickOf(t, info.PID) || st.Ports["http"] != port || !st.Ready {
		t.Errorf("state file = %+v", st)
	}

	h := a.Host()
	if h.ID != "host_test" || h.State != standby.HostUp || h.Isolation != "none" || h.Capacity.VCPUs < 1 || h.Capacity.MemoryMB < 1 || h.MaxInstances != 1000 {
		t.Errorf("Host = %+v", h)
	}
}

func TestEnvFilesAndExpansion(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "", nil)
	b := &standby.Build{
		// The agent expands ${PORT} and $PORT_ADMIN in argv; ${NOPE} (not
		// in the env) and the script's own $0/$1 are left to the shell.
		StartCmd: []string{"sh", "-c", `env > ../env.out; pwd > ../pwd.out; printf '%s\n' "$0" "$1" > ../args.out; exec sleep 1000`,
			"p=${PORT},$PORT_ADMIN", "x${NOPE}y"},
		Env:                  map[string]string{"FOO": "build", "KEEP": "k"},
		Workdir:              "work/dir",
		Files:                map[string]string{"conf/app.txt": "hello", "top.txt": "top"},
		Ports:                []standby.Port{{Name: "http"}, {Name: "admin"}},
		ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckProcess},
	}
	info := a.start(t, b, map[string]string{"FOO": "spec", "EXTRA": "e"})
	root := a.root(info.ID)
	waitUntil(t, "args.out", func() bool {
		b, err := os.ReadFile(filepath.Join(root, "work", "args.out"))
		return err == nil && strings.Count(string(b), "\n") == 2
	})

	if got, want := readFile(t, filepath.Join(root, "work", "args.out")),
		fmt.Sprintf("p=%d,%d\nx${NOPE}y\n", info.Ports["http"], info.Ports["admin"]); got != want {
		t.Errorf("argv = %q, want %q", got, want)
	}
	if got := strings.TrimSpace(readFile(t, filepath.Join(root, "work", "pwd.out"))); got != filepath.Join(root, "work", "dir") {
		t.Errorf("cwd = %q", got)
	}
	env := map[string]string{}
	for _, line := range strings.Split(readFile(t, filepath.Join(root, "work", "env.out")), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	want := map[string]string{
		"FOO": "spec", "KEEP": "k", "EXTRA": "e",
		"PORT":                  strconv.Itoa(info.Ports["http"]),
		"PORT_HTTP":             strconv.Itoa(info.Ports["http"]),
		"PORT_ADMIN":            strconv.Itoa(info.Ports["admin"]),
		"STANDBY_INSTANCE_ID":   info.ID,
		"STANDBY_ARTEFACTS_DIR": filepath.Join(root, "artefacts"),
		"HOME":                  root,
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if env["PATH"] == "" {
		t.Error("PATH not set")
	}
	if fi, err := os.Stat(filepath.Join(root, "artefacts")); err != nil || !fi.IsDir() {
		t.Errorf("artefacts dir: %v", err)
	}
	for p, content := range b.Files {
		path := filepath.Join(root, p)
		if got := readFile(t, path); got != content {
			t.Errorf("file %s = %q", p, got)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
			t.Errorf("file %s mode %v", p, fi.Mode())
		}
	}
	if info.Ports["http"] == info.Ports["admin"] {
		t.Errorf("ports not distinct: %v", info.Ports)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "", func(c *Config) { c.MaxInstances = 1 })
	tests := []struct {
		name  string
		spec  standby.InstanceSpec
		code  string
		field string
	}{
		{"escaping file", standby.InstanceSpec{ID: "inst_a", Build: &standby.Build{StartCmd: []string{"true"}, Files: map[string]string{"../x": "x"}}}, standby.EValidation, "files.../x"},
		{"absolute file", standby.InstanceSpec{ID: "inst_b", Build: &standby.Build{StartCmd: []string{"true"}, Files: map[string]string{"/etc/x": "x"}}}, standby.EValidation, "files./etc/x"},
		{"escaping workdir", standby.InstanceSpec{ID: "inst_c", Build: &standby.Build{StartCmd: []string{"true"}, Workdir: "../.."}}, standby.EValidation, "workdir"},
		{"missing executable", standby.InstanceSpec{ID: "inst_d", Build: &standby.Build{StartCmd: []string{"no-such-program-xyz"}}}, standby.EValidation, "start_cmd"},
		{"not executable", standby.InstanceSpec{ID: "inst_e", Build: &standby.Build{StartCmd: []string{"./data"}, Files: map[string]string{"data": "x"}}}, standby.EValidation, "start_cmd"},
		{"bad id", standby.InstanceSpec{ID: "../up", Build: &standby.Build{StartCmd: []string{"true"}}}, standby.EValidation, "id"},
		{"no build", standby.InstanceSpec{ID: "inst_f"}, standby.EValidation, "build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.StartInstance(context.Background(), tt.spec)
			if standby.ErrorCode(err) != tt.code {
				t.Fatalf("err = %v, want code %s", err, tt.code)
			}
			if list := standby.ErrorList(err); len(list) == 0 || list[0].Field != tt.field {
				t.Errorf("err = %v, want field %s", err, tt.field)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(a.dataDir, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file escaped the instance root: %v", err)
	}

	info := a.start(t, shBuild("exec sleep 1000"), nil)
	if _, err := a.StartInstance(context.Background(), standby.InstanceSpec{ID: info.ID, Build: shBuild("exec sleep 1000")}); !standby.IsCode(err, standby.EConflict) {
		t.Errorf("same id again: %v, want conflict", err)
	}
	if _, err := a.StartInstance(context.Background(), standby.InstanceSpec{ID: "inst_more", Build: shBuild("exec sleep 1000")}); !standby.IsCode(err, standby.EUnavailable) {
		t.Errorf("beyond MaxInstances: %v, want unavailable", err)
	}
	if err := a.StopInstance(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	// Failed starts report no event; the stopped one at most its ready.
	a.shutdown(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ev := range a.events {
		if ev.InstanceID != info.ID || ev.Type != standby.EventReady {
			t.Errorf("unexpected event %+v", ev)
		}
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		build  *standby.Build
		act    func(t *testing.T, a *testAgent, info standby.InstanceInfo)
		reason string
	}{
		{
			name:   "exit status",
			build:  shBuild("exit 3"),
			reason: "exited with status 3",
		},
		{
			name: "readiness timeout",
			build: &standby.Build{
				StartCmd:             []string{"sleep", "1000"},
				Ports:                []standby.Port{{Name: "http"}},
				ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckPort, Data: standby.HealthCheckData{Timeout: 1}},
			},
			reason: "readiness check timed out",
		},
		{
			name:  "kill -9 after ready",
			build: echoBuild(),
			act: func(t *testing.T, a *testAgent, info standby.InstanceInfo) {
				a.waitEvent(t, info.ID, standby.EventReady)
				if err := syscall.Kill(info.PID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			},
			reason: "killed by signal 9",
		},
		{
			name: "liveness fails",
			build: &standby.Build{
				StartCmd:    []string{"standby", "flaky-server"},
				Ports:       []standby.Port{{Name: "http"}},
				HealthCheck: &standby.HealthCheck{Type: standby.CheckHTTP, Data: standby.HealthCheckData{Endpoint: "/healthz"}},
			},
			act: func(t *testing.T, a *testAgent, info standby.InstanceInfo) {
				a.waitEvent(t, info.ID, standby.EventReady)
				if err := os.WriteFile(filepath.Join(a.root(info.ID), "sick"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			reason: "health check failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startAgent(t, "", nil)
			info := a.start(t, tt.build, nil)
			st, _ := readStat(info.PID) // gone already when it exited at once: tick 0 matches nothing
			tick := st.startTime
			if tt.act != nil {
				tt.act(t, a, info)
			}
			ev := a.waitEvent(t, info.ID, standby.EventFailed)
			if ev.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", ev.Reason, tt.reason)
			}
			if running(info.PID, tick) {
				t.Errorf("process %d still runs", info.PID)
			}
			if list, _ := a.Instances(context.Background()); len(list) != 0 {
				t.Errorf("Instances = %+v", list)
			}
			if _, err := os.Stat(a.statePath(info.ID)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("state file kept: %v", err)
			}
			// One failed event, nothing after it.
			a.shutdown(t)
			evs := a.eventsOf(info.ID)
			failed := 0
			for _, ev := range evs {
				if ev.Type == standby.EventFailed {
					failed++
				}
			}
			if evs[len(evs)-1].Type != standby.EventFailed || failed != 1 {
				t.Errorf("events = %+v", evs)
			}
		})
	}
}

func TestStopKillsWholeGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		grace  time.Duration
	}{
		{"sigterm", "sleep 1000 & sleep 1000", 10 * time.Second},
		{"sigterm ignored", `trap "" TERM; sleep 1000 & sleep 1000`, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := startAgent(t, "", func(c *Config) { c.StopGrace = tt.grace })
			info := a.start(t, shBuild(tt.script), nil)
			a.waitEvent(t, info.ID, standby.EventReady)
			var members map[int]uint64
			waitUntil(t, "sh and two sleeps", func() bool {
				members = groupMembers(info.PID)
				return len(members) == 3
			})
			if err := a.StopInstance(context.Background(), info.ID); err != nil {
				t.Fatal(err)
			}
			for pid, tick := range members {
				if running(pid, tick) {
					t.Errorf("process %d of the group still runs", pid)
				}
			}
			if list, _ := a.Instances(context.Background()); len(list) != 0 {
				t.Errorf("Instances = %+v", list)
			}
			if _, err := os.Stat(a.statePath(info.ID)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("state file kept: %v", err)
			}
			if err := a.StopInstance(context.Background(), info.ID); err != nil {
				t.Errorf("second stop: %v", err)
			}
			if err := a.StopInstance(context.Background(), "inst_unknown"); err != nil {
				t.Errorf("unknown id: %v", err)
			}
			// No event for an instance stopped on request.
			a.shutdown(t)
			for _, ev := range a.eventsOf(info.ID) {
				if ev.Type == standby.EventFailed {
					t.Errorf("event after stop: %+v", ev)
				}
			}
		})
	}
}

func TestLogs(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "", nil)
	info := a.start(t, shBuild(`for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2
while [ ! -e go ]; do sleep 0.01; done; echo more; exec sleep 1000`), nil)
	ctx := context.Background()
	logs := func(opt standby.LogOptions) string {
		t.Helper()
		var b strings.Builder
		if err := a.Logs(ctx, info.ID, opt, &b); err != nil {
			t.Fatalf("Logs(%+v): %v", opt, err)
		}
		return b.String()
	}
	waitUntil(t, "five lines", func() bool { return strings.Count(logs(standby.LogOptions{}), "\n") == 5 })

	tests := []struct {
		opt  standby.LogOptions
		want string
	}{
		{standby.LogOptions{}, "line1\nline2\nline3\nline4\nline5\n"},
		{standby.LogOptions{Stream: "stdout", Tail: 2}, "line4\nline5\n"},
		{standby.LogOptions{Tail: 5}, "line1\nline2\nline3\nline4\nline5\n"},
		{standby.LogOptions{Tail: 50}, "line1\nline2\nline3\nline4\nline5\n"},
		{standby.LogOptions{Stream: "stderr"}, "oops\n"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s tail %d", tt.opt.Stream, tt.opt.Tail), func(t *testing.T) {
			if got := logs(tt.opt); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	// Follow: sees new output, and returns once the instance is stopped.
	var buf syncBuffer
	done := make(chan error, 1)
	go func() { done <- a.Logs(ctx, info.ID, standby.LogOptions{Tail: 1, Follow: true}, &buf) }()
	waitUntil(t, "tail", func() bool { return buf.String() == "line5\n" })
	if err := os.WriteFile(filepath.Join(a.root(info.ID), "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "followed output", func() bool { return buf.String() == "line5\nmore\n" })
	if err := a.StopInstance(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("follow did not return after stop")
	}

	// Follow ends with its ctx too; logs stay readable after the stop.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Logs(cctx, info.ID, standby.LogOptions{Follow: true}, &strings.Builder{}); err != nil {
		t.Errorf("follow of a stopped instance: %v", err)
	}
	if got := logs(standby.LogOptions{Tail: 1}); got != "more\n" {
		t.Errorf("after stop: %q", got)
	}

	errTests := []struct {
		id   string
		opt  standby.LogOptions
		code string
	}{
		{"inst_nope", standby.LogOptions{}, standby.ENotFound},
		{"../..", standby.LogOptions{}, standby.ENotFound},
		{info.ID, standby.LogOptions{Stream: "stdin"}, standby.EValidation},
		{info.ID, standby.LogOptions{Tail: -1}, standby.EValidation},
	}
	for _, tt := range errTests {
		if err := a.Logs(ctx, tt.id, tt.opt, &strings.Builder{}); !standby.IsCode(err, tt.code) {
			t.Errorf("Logs(%s, %+v) = %v, want %s", tt.id, tt.opt, err, tt.code)
		}
	}
}

func TestFollowRunningInstanceEndsWithCtx(t *testing.T) {
	t.Parallel()
	a := startAgent(t, "", nil)
	info := a.start(t, shBuild("echo hi; exec sleep 1000"), nil)
	ctx, cancel := context.WithCancel(context.Background())
	var buf syncBuffer
	done := make(chan error, 1)
	go func() { done <- a.Logs(ctx, info.ID, standby.LogOptions{Follow: true}, &buf) }()
	waitUntil(t, "output", func() bool { return buf.String() == "hi\n" })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("follow: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("follow did not return after ctx ended")
	}
}

func TestReadoption(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := startAgent(t, dir, nil)
	live := a.start(t, echoBuild(), nil)
	a.waitEvent(t, live.ID, standby.EventReady)
	dead := a.start(t, shBuild("exec sleep 1000"), nil)
	a.waitEvent(t, dead.ID, standby.EventReady)
	liveTick, deadTick := startTickOf(t, live.PID), startTickOf(t, dead.PID)

	// The agent stops; its instances do not.
	a.shutdown(t)
	if !running(live.PID, liveTick) || !running(dead.PID, deadTick) {
		t.Fatal("stopping the agent stopped an instance")
	}
	// One dies while no agent runs.
	if err := syscall.Kill(dead.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the killed instance to die", func() bool { return !running(dead.PID, deadTick) })

	// New re-adopts: Instances has the live one at once.
	b := startAgent(t, dir, nil)
	list, err := b.Instances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != live.ID || !list[0].Ready || list[0].PID != live.PID || list[0].Ports["http"] != live.Ports["http"] {
		t.Fatalf("re-adopted = %+v, want %s", list, live.ID)
	}
	ev := b.waitEvent(t, dead.ID, standby.EventFailed)
	if ev.Reason != "lost while agent was down" || ev.HostID != "host_test" {
		t.Errorf("failed event = %+v", ev)
	}
	if _, err := os.Stat(filepath.Join(dir, "run", dead.ID+stateSuffix)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dead instance's state file kept: %v", err)
	}
	// Logs of the re-adopted instance are still there.
	if err := b.Logs(context.Background(), live.ID, standby.LogOptions{}, &strings.Builder{}); err != nil {
		t.Errorf("logs: %v", err)
	}

	// A later death of the re-adopted process is reported by the new agent.
	if err := syscall.Kill(live.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ev = b.waitEvent(t, live.ID, standby.EventFailed)
	if ev.HostID != "host_test" {
		t.Errorf("failed event = %+v", ev)
	}
	if list, _ := b.Instances(context.Background()); len(list) != 0 {
		t.Errorf("Instances after death = %+v", list)
	}
	for _, e := range b.eventsOf(live.ID) {
		if e.Type == standby.EventReady {
			t.Errorf("re-adoption re-reported ready: %+v", e)
		}
	}
}

func TestReadoptedStop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := startAgent(t, dir, nil)
	info := a.start(t, shBuild("sleep 1000 & sleep 1000"), nil)
	a.waitEvent(t, info.ID, standby.EventReady)
	var members map[int]uint64
	waitUntil(t, "sh and two sleeps", func() bool {
		members = groupMembers(info.PID)
		return len(members) == 3
	})
	a.shutdown(t)

	b := startAgent(t, dir, nil)
	if list, _ := b.Instances(context.Background()); len(list) != 1 {
		t.Fatalf("re-adopted = %+v", list)
	}
	if err := b.StopInstance(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	for pid, tick := range members {
		if running(pid, tick) {
			t.Errorf("process %d still runs", pid)
		}
	}
	b.shutdown(t)
	if evs := b.eventsOf(info.ID); len(evs) != 0 {
		t.Errorf("events = %+v", evs)
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want procStat
		ok   bool
	}{
		{"plain", "42 (sleep) S 1 42 42 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 12345 0 0", procStat{state: 'S', ppid: 1, pgrp: 42, startTime: 12345}, true},
		{"parens and spaces in comm", "42 (a) b) (c d) Z 1 7 42 0 -1 4194560 97 0 0 0 0 0 0 0 20 0 1 0 999 0 0", procStat{state: 'Z', ppid: 1, pgrp: 7, startTime: 999}, true},
		{"truncated", "42 (x) S 1 2", procStat{}, false},
		{"garbage", "nothing here", procStat{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseStat = %+v, %v; want %+v ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PORT": "8080", "A_B": "x", "EMPTY": ""}
	tests := []struct{ in, want string }{
		{"${PORT}", "8080"},
		{"$PORT", "8080"},
		{"--port=$PORT/x", "--port=8080/x"},
		{"$A_B$PORT", "x8080"},
		{"${EMPTY}.", "."},
		{"$NOPE ${NOPE} $1 $$ ${X:-y} $", "$NOPE ${NOPE} $1 $$ ${X:-y} $"},
		{"${PORT", "${PORT"},
		{"no refs", "no refs"},
	}
	for _, tt := range tests {
		if got := expand(tt.in, env); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{HostID: "h"}); err == nil {
		t.Error("no DataDir: want error")
	}
	if _, err := New(Config{DataDir: t.TempDir()}); err == nil {
		t.Error("no HostID: want error")
	}
}

func TestReadoptNotYetReady(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := startAgent(t, dir, nil)
	// Listens only once a file named "go" exists: not ready when A stops.
	info := a.start(t, &standby.Build{
		StartCmd: []string{"sh", "-c", "while [ ! -e go ]; do sleep 0.01; done; exec " + helperExe + " echo-server"},
		Ports:    []standby.Port{{Name: "http"}},
	}, nil)
	a.shutdown(t)
	if evs := a.eventsOf(info.ID); len(evs) != 0 {
		t.Fatalf("events before go = %+v", evs)
	}

	b := startAgent(t, dir, nil)
	if list, _ := b.Instances(context.Background()); len(list) != 1 || list[0].Ready {
		t.Fatalf("re-adopted = %+v, want one not ready", list)
	}
	if err := os.WriteFile(filepath.Join(b.root(info.ID), "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The new agent finishes the readiness check and reports it.
	b.waitEvent(t, info.ID, standby.EventReady)
	if list, _ := b.Instances(context.Background()); len(list) != 1 || !list[0].Ready {
		t.Errorf("after ready = %+v", list)
	}
	if err := syscall.Kill(info.PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	b.waitEvent(t, info.ID, standby.EventFailed)
}

// stepClock is a clock a test moves by hand.
type stepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestEndedInstanceKeptForRetention: an ended instance's artefacts and
// logs stay readable for ArtefactRetention after it ended, then the sweep
// deletes them and nothing of the instance is left on disk.
func TestEndedInstanceKeptForRetention(t *testing.T) {
	clk := &stepClock{now: standby.Now()}
	ta := startAgent(t, "", func(c *Config) {
		c.Clock = clk
		c.ArtefactRetention = time.Hour
	})
	ctx := context.Background()
	id := ta.startRes(t, shBuild(`echo report > "$STANDBY_ARTEFACTS_DIR/report.txt"; echo hello; exec sleep 1000`), standby.Resources{})
	waitUntil(t, "artefact", func() bool {
		items, _, _ := ta.Artefacts(ctx, id, standby.Page{})
		return len(items) == 1
	})
	if err := ta.StopInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	kept := func() (string, string, error, error) {
		var art, logs bytes.Buffer
		aerr := ta.ArtefactContent(ctx, id, "report.txt", &art)
		lerr := ta.Logs(ctx, id, standby.LogOptions{}, &logs)
		return art.String(), logs.String(), aerr, lerr
	}
	clk.add(59 * time.Minute)
	ta.sweepOnce()
	if art, logs, aerr, lerr := kept(); aerr != nil || lerr != nil || art != "report\n" || logs != "hello\n" {
		t.Fatalf("59 min after the end: artefact %q (%v), logs %q (%v)", art, aerr, logs, lerr)
	}
	clk.add(2 * time.Minute)
	ta.sweepOnce()
	if _, _, aerr, lerr := kept(); standby.ErrorCode(aerr) != standby.ENotFound || standby.ErrorCode(lerr) != standby.ENotFound {
		t.Fatalf("61 min after the end: artefact err %v, logs err %v, want not_found", aerr, lerr)
	}
	left, _ := filepath.Glob(filepath.Join(ta.dataDir, "*", id+"*"))
	if len(left) != 0 {
		t.Fatalf("left after the sweep: %v", left)
	}
}

// The agent fills its log stock while idle, a start renames two stock
// files into its logs (they hold its output), the sweeper leaves the stock
// alone, and an agent restarted on the same dir takes over the stock.
func TestLogStock(t *testing.T) {
	dir := t.TempDir()
	stock := func() map[uint64]bool {
		files, _ := filepath.Glob(filepath.Join(dir, "instances", stockPrefix+"*"))
		inodes := map[uint64]bool{}
		for _, f := range files {
			var st syscall.Stat_t
			if syscall.Stat(f, &st) == nil {
				inodes[st.Ino] = true
			}
		}
		return inodes
	}
	ta := startAgent(t, dir, nil)
	waitUntil(t, "the stock full", func() bool { return LogStockFull(dir) })
	before := stock()
	if len(before) != LogStockSize {
		t.Fatalf("stock of %d files, want %d", len(before), LogStockSize)
	}
	info := ta.start(t, shBuild("echo out; echo err >&2; exec sleep 1000"), nil)
	for stream, want := range map[string]string{"stdout": "out\n", "stderr": "err\n"} {
		var st syscall.Stat_t
		if err := syscall.Stat(ta.paths(info.ID).logPath(stream), &st); err != nil || !before[st.Ino] {
			t.Fatalf("%s log is not a stock file (%v)", stream, err)
		}
		waitUntil(t, stream, func() bool {
			var b bytes.Buffer
			return ta.Logs(context.Background(), info.ID, standby.LogOptions{Stream: stream}, &b) == nil && b.String() == want
		})
	}
	waitUntil(t, "the stock full again", func() bool { return LogStockFull(dir) })
	ta.sweepOnce()
	if n := len(stock()); n != LogStockSize {
		t.Fatalf("stock after a sweep: %d files, want %d", n, LogStockSize)
	}
	if err := ta.StopInstance(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	ta.shutdown(t)
	kept := stock()
	ta = startAgent(t, dir, nil)
	time.Sleep(2 * stockPoll)
	if now := stock(); len(now) != LogStockSize || len(ta.stock.free) != LogStockSize {
		t.Fatalf("a restarted agent's stock: %d files, %d taken over, want the %d left", len(now), len(ta.stock.free), len(kept))
	}
}
