package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/standbyhq/standby"
)

// isolatedAgent starts an agent with isolation on, or skips the test when
// this process cannot have it (not root, no cgroups).
func isolatedAgent(t *testing.T) *testAgent {
	t.Helper()
	return isolatedAgentIn(t, "")
}

// isolatedAgentIn is isolatedAgent on dataDir ("": a new temp dir).
func isolatedAgentIn(t *testing.T, dataDir string) *testAgent {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf // CI must cover isolation, never skip it
	}
	if os.Geteuid() != 0 {
		skip("isolation tests need root (namespaces, mounts, cgroups); run as root to cover them")
	}
	if _, _, err := resolveIsolation(IsolationOn); err != nil {
		skip("isolation unavailable: %v", err)
	}
	return startAgent(t, dataDir, func(c *Config) {
		c.Isolation = IsolationOn
		c.UIDBase = 300000 + os.Getpid()%1000*100
		c.StopGrace = time.Second
	})
}

// startRes starts b with resources and waits until it is ready.
func (ta *testAgent) startRes(t *testing.T, b *standby.Build, res standby.Resources) string {
	t.Helper()
	id := standby.NewID(standby.PrefixInstance)
	if _, err := ta.StartInstance(context.Background(), standby.InstanceSpec{ID: id, Build: b, Resources: res}); err != nil {
		t.Fatalf("StartInstance: %v", err)
	}
	ta.waitEvent(t, id, standby.EventReady)
	return id
}

func idleBuild() *standby.Build {
	return &standby.Build{StartCmd: []string{"standby", "idle"}, ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckProcess}}
}

func (ta *testAgent) exec(t *testing.T, id string, req standby.ExecRequest) standby.ExecResult {
	t.Helper()
	res, err := ta.Exec(context.Background(), id, req)
	if err != nil {
		t.Fatalf("Exec %v: %v", req.Cmd, err)
	}
	return res
}

func TestIsolationOOMKilled(t *testing.T) {
	t.Parallel()
	ta := isolatedAgent(t)
	id := standby.NewID(standby.PrefixInstance)
	b := &standby.Build{StartCmd: []string{"standby", "alloc", "200"}, ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckProcess}}
	if _, err := ta.StartInstance(context.Background(), standby.InstanceSpec{ID: id, Build: b, Resources: standby.Resources{MemoryMB: 64}}); err != nil {
		t.Fatal(err)
	}
	ev := ta.waitEvent(t, id, standby.EventFailed)
	if ev.Reason != standby.ReasonOOMKilled {
		t.Fatalf("failed reason = %q, want %q", ev.Reason, standby.ReasonOOMKilled)
	}
}

func TestIsolationCPUQuota(t *testing.T) {
	t.Parallel()
	ta := isolatedAgent(t)
	b := &standby.Build{StartCmd: []string{"standby", "spin"}, ReadinessHealthCheck: &standby.HealthCheck{Type: standby.CheckProcess}}
	id := ta.startRes(t, b, standby.Resources{VCPUs: 0.5})
	// A window long enough for many CFS periods (100 ms each).
	first, err := ta.Stats(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	_ = first
	time.Sleep(1500 * time.Millisecond) // the measurement window, not a wait for an event
	st, err := ta.Stats(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Cgroup || st.CPUQuota != 0.5 {
		t.Fatalf("stats = %+v, want cgroup numbers with cpu_quota 0.5", st)
	}
	if st.Usage.CPU < 0.3 || st.Usage.CPU > 0.7 {
		t.Fatalf("busy loop under vcpus 0.5 used %.2f cores, want about 0.5", st.Usage.CPU)
	}
}

func TestIsolationPidsLimit(t *testing.T) {
	t.Parallel()
	ta := isolatedAgent(t)
	id := ta.startRes(t, idleBuild(), standby.Resources{VCPUs: 0.5})
	// A fork bomb: each shell starts two more, without end, until the
	// pids limit refuses forks; the timeout then kills what it made.
	res := ta.exec(t, id, standby.ExecRequest{
		Cmd:       []string{"sh", "-c", "b() { b & b & wait; }; b"},
		TimeoutMS: 3000,
	})
	if !res.TimedOut && !strings.Contains(res.Stderr, "fork") {
		t.Fatalf("fork bomb ended without hitting the limit: %+v", res)
	}
	// The sandbox still answers, and the bomb leaves nothing behind: the
	// killed processes are gone once the init has reaped them.
	inst := ta.runningInst(id)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := ta.exec(t, id, standby.ExecRequest{Cmd: []string{"sh", "-c", "ls /proc | grep -c '^[0-9]'"}})
		n, _ := strconv.Atoi(strings.TrimSpace(out.Stdout))
		if out.ExitCode != 0 || n == 0 {
			t.Fatalf("after the fork bomb the sandbox does not answer: %q (exit %d, %s)", out.Stdout, out.ExitCode, out.Stderr)
		}
		cg, err := inst.iso.cgroup()
		if err != nil {
			t.Fatal(err)
		}
		pids := cg.procs()
		if n <= 5 && len(pids) <= 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("20s after the fork bomb the sandbox still has %d processes, its cgroup %d", n, len(pids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestIsolationSeesOnlyItself(t *testing.T) {
	t.Parallel()
	ta := isolatedAgent(t)
	a := ta.startRes(t, idleBuild(), standby.Resources{})
	b := ta.startRes(t, shBuild("echo secret-of-b > mine.txt; exec sleep 1000"), standby.Resources{})
	waitUntil(t, "b's file", func() bool { _, err := os.Stat(filepath.Join(ta.root(b), "mine.txt")); return err == nil })
	os.WriteFile(filepath.Join(ta.dataDir, "admin.key"), []byte("sbk_admin_secret"), 0o600)
	bPid := ta.runningInst(b).pid

	ps := ta.exec(t, a, standby.ExecRequest{Cmd: []string{"ps", "-eo", "pid,comm"}})
	lines := strings.Split(strings.TrimSpace(ps.Stdout), "\n")
	// Header, the init (PID 1, running the built-in idle itself), ps.
	if len(lines) != 3 || !strings.Contains(ps.Stdout, " 1 ") {
		t.Fatalf("ps inside the sandbox shows other processes:\n%s", ps.Stdout)
	}
	if strings.Contains(ps.Stdout, "sleep") {
		t.Fatalf("ps inside a shows b's sleep:\n%s", ps.Stdout)
	}
	// The init runs the built-in in-process, as the instance's uid.
	// Every id of the init (real, effective, saved, fs) is the instance's,
	// and it has no supplementary group.
	st := ta.exec(t, a, standby.ExecRequest{Cmd: []string{"sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/1/status"}})
	uid := strconv.Itoa(ta.runningInst(a).iso.UID)
	want := fmt.Sprintf("Uid:\t%[1]s\t%[1]s\t%[1]s\t%[1]s\nGid:\t%[1]s\t%[1]s\t%[1]s\t%[1]s\nGroups:\t \n", uid)
	if st.Stdout != want {
		t.Fatalf("init of a built-in runs as\n%q, want\n%q", st.Stdout, want)
	}
	tests := []struct {
		name string
		cmd  string
	}{
		{"admin key", "cat " + filepath.Join(ta.dataDir, "admin.key")},
		{"admin key via init's root", "cat /proc/1/root" + filepath.Join(ta.dataDir, "admin.key")},
		{"store dir", "ls " + ta.dataDir},
		{"other sandbox's file", "cat /proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(ta.runningInst(b).rootFD) + "/mine.txt"},
		{"signal other sandbox", "kill -9 " + strconv.Itoa(bPid)},
		{"write system dirs", "touch /usr/bin/evil"},
		{"write the root", "touch /evil"},
		{"write /dev", "touch /dev/evil"},
		{"see host mounts", "grep -F " + ta.dataDir + " /proc/self/mountinfo"},
		{"read the init's memory", "head -c 64 /proc/1/environ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ta.exec(t, a, standby.ExecRequest{Cmd: []string{"sh", "-c", tt.cmd}})
			if res.ExitCode == 0 || strings.Contains(res.Stdout, "secret") {
				t.Fatalf("%q succeeded inside the sandbox: %+v", tt.cmd, res)
			}
		})
	}
	if ta.runningInst(b) == nil || !running(bPid, ta.runningInst(b).startTick) {
		t.Fatal("sandbox b was killed from sandbox a")
	}
	// Its own writable places are writable, and are its root's.
	if res := ta.exec(t, a, standby.ExecRequest{Cmd: []string{"sh", "-c", "echo t > /tmp/t && echo s > /dev/shm/s && cat /sandbox/.tmp/t /sandbox/.shm/s"}}); res.ExitCode != 0 || res.Stdout != "t\ns\n" {
		t.Fatalf("/tmp and /dev/shm inside the sandbox: %+v", res)
	}
	who := ta.exec(t, a, standby.ExecRequest{Cmd: []string{"id", "-u"}})
	if uid, _ := strconv.Atoi(strings.TrimSpace(who.Stdout)); uid == 0 || uid != ta.runningInst(a).iso.UID {
		t.Fatalf("exec runs as uid %q, want the instance's unprivileged uid", who.Stdout)
	}
}

func TestIsolationDiskLimit(t *testing.T) {
	t.Parallel()
	ta := isolatedAgent(t)
	id := ta.startRes(t, idleBuild(), standby.Resources{DiskMB: 8})
	res := ta.exec(t, id, standby.ExecRequest{Cmd: []string{"sh", "-c", "dd if=/dev/zero of=/sandbox/big bs=1M count=16"}})
	if res.ExitCode == 0 || !strings.Contains(res.Stderr, "No space left") {
		t.Fatalf("writing 16 MiB into disk_mb 8 = %+v, want ENOSPC", res)
	}
	// Only the sandbox's space is full: the agent's data dir takes writes.
	if err := os.WriteFile(filepath.Join(ta.dataDir, "after"), bytes.Repeat([]byte{1}, 1<<20), 0o600); err != nil {
		t.Fatalf("host write after the sandbox filled its disk: %v", err)
	}
	if err := ta.WriteFile(context.Background(), id, "more", bytes.NewReader(bytes.Repeat([]byte{1}, 1<<20))); standby.ErrorCode(err) != standby.EValidation {
		t.Fatalf("WriteFile into a full sandbox = %v, want validation_failed (no space)", err)
	}
}

func TestIsolationExecTimeoutKillsTree(t *testing.T) {
	t.Parallel()
	for _, iso := range []bool{false, true} {
		t.Run("isolated="+strconv.FormatBool(iso), func(t *testing.T) {
			var ta *testAgent
			if iso {
				ta = isolatedAgent(t)
			} else {
				ta = startAgent(t, "", nil)
			}
			id := ta.startRes(t, idleBuild(), standby.Resources{})
			marker := strconv.Itoa(1000 + os.Getpid()%1000 + map[bool]int{true: 1}[iso])
			res := ta.exec(t, id, standby.ExecRequest{Cmd: []string{"sh", "-c", "sleep " + marker + " & setsid sleep " + marker + " & sleep " + marker}, TimeoutMS: 300})
			if !res.TimedOut || res.ExitCode != -1 {
				t.Fatalf("exec = %+v, want timed out", res)
			}
			for pid := range listProcs() {
				cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
				if string(cmd) == "sleep\x00"+marker+"\x00" {
					t.Fatalf("exec timeout left %q (pid %d) running", cmd, pid)
				}
			}
		})
	}
}

func TestIsolationFilesAndArtefacts(t *testing.T) {
	t.Parallel()
	ta := isolatedAgent(t)
	id := ta.startRes(t, shBuild(`echo report > "$STANDBY_ARTEFACTS_DIR/report.txt"; ln -s /etc/passwd "$STANDBY_ARTEFACTS_DIR/pw"; ln -s /etc/passwd out; exec sleep 1000`), standby.Resources{})
	ctx := context.Background()
	if err := ta.WriteFile(ctx, id, "dir/in.txt", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	got := ta.exec(t, id, standby.ExecRequest{Cmd: []string{"cat", "dir/in.txt"}})
	if got.Stdout != "hello" {
		t.Fatalf("sandbox reads %q, want hello", got.Stdout)
	}
	// The sandbox's uid owns what the agent wrote: it may change it.
	if res := ta.exec(t, id, standby.ExecRequest{Cmd: []string{"sh", "-c", "echo more >> dir/in.txt && echo x > dir/new"}}); res.ExitCode != 0 {
		t.Fatalf("sandbox cannot write its files: %+v", res)
	}
	waitUntil(t, "artefact", func() bool {
		items, _, _ := ta.Artefacts(ctx, id, standby.Page{})
		return len(items) == 1
	})
	// The symlinks come after the artefact: wait for the last one.
	waitUntil(t, "symlink out", func() bool { _, err := os.Lstat(filepath.Join(ta.root(id), "out")); return err == nil })
	for _, p := range []string{"../x", "/etc/passwd", "out", "dir/../../x"} {
		var buf bytes.Buffer
		if err := ta.ReadFile(ctx, id, p, &buf); standby.ErrorCode(err) != standby.EValidation {
			t.Errorf("ReadFile(%q) = %v, want validation_failed", p, err)
		}
	}
	if err := ta.WriteFile(ctx, id, "out", strings.NewReader("x")); standby.ErrorCode(err) != standby.EValidation {
		t.Errorf("WriteFile through a symlink out = %v, want validation_failed", err)
	}
	var buf bytes.Buffer
	if err := ta.ArtefactContent(ctx, id, "pw", &buf); standby.ErrorCode(err) != standby.EValidation {
		t.Errorf("ArtefactContent(symlink out) = %v (%q), want validation_failed", err, buf.String())
	}
	// The root and the skeleton are mounted in the sandbox's (and the
	// spawner's) namespace only: the host's mount table holds neither.
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, filepath.Join(ta.dataDir, "run")+"/") {
			t.Errorf("a host mount in the run dir: %s", line)
		}
	}
	inst := ta.runningInst(id)
	if err := ta.StopInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Kept after the stop, though the sandbox's tmpfs is gone.
	buf.Reset()
	if err := ta.ArtefactContent(ctx, id, "report.txt", &buf); err != nil || buf.String() != "report\n" {
		t.Fatalf("artefact after stop = %q, %v", buf.String(), err)
	}
	if !inst.rootReleased() {
		t.Fatal("the agent still holds the sandbox's root after stop")
	}
}

// TestIsolationReadoptionReachesRoot: a sandbox's root is mounted in its
// own namespace only, so an agent that restarts reaches it again through
// the init: files, artefacts and their copy at the end all still work.
func TestIsolationReadoptionReachesRoot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	a := isolatedAgentIn(t, dir)
	id := a.startRes(t, shBuild("echo kept > artefacts/r.txt; echo mine > mine.txt; exec sleep 1000"), standby.Resources{})
	waitUntil(t, "the sandbox's files", func() bool { _, err := os.Stat(filepath.Join(a.root(id), "mine.txt")); return err == nil })
	a.shutdown(t)

	b := isolatedAgentIn(t, dir)
	if b.runningInst(id) == nil {
		t.Fatal("the sandbox was not re-adopted")
	}
	var buf bytes.Buffer
	if err := b.ReadFile(ctx, id, "mine.txt", &buf); err != nil || buf.String() != "mine\n" {
		t.Fatalf("ReadFile after re-adoption = %q, %v", buf.String(), err)
	}
	if err := b.WriteFile(ctx, id, "new.txt", strings.NewReader("x")); err != nil {
		t.Fatalf("WriteFile after re-adoption: %v", err)
	}
	if res := b.exec(t, id, standby.ExecRequest{Cmd: []string{"cat", "new.txt"}}); res.Stdout != "x" {
		t.Fatalf("the sandbox sees %+v, want the file the agent wrote", res)
	}
	if err := b.StopInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := b.ArtefactContent(ctx, id, "r.txt", &buf); err != nil || buf.String() != "kept\n" {
		t.Fatalf("artefact kept after stop = %q, %v", buf.String(), err)
	}
}

// TestIsolationStopTermsEveryProcess: a stop's SIGTERM reaches every
// process of the sandbox, also one in a session of its own (out of the
// process group the agent signals), so it can clean up.
func TestIsolationStopTermsEveryProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ta := isolatedAgent(t)
	// The main process waits for its child once both got SIGTERM.
	id := ta.startRes(t, shBuild(`setsid sh -c 'trap "echo child > artefacts/term; exit 0" TERM; touch child.up; while :; do sleep 0.1; done' &
trap 'wait; exit 0' TERM; touch main.up; while :; do sleep 0.1; done`), standby.Resources{})
	waitUntil(t, "both traps set", func() bool {
		_, errC := os.Stat(filepath.Join(ta.root(id), "child.up"))
		_, errM := os.Stat(filepath.Join(ta.root(id), "main.up"))
		return errC == nil && errM == nil
	})
	if err := ta.StopInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ta.ArtefactContent(ctx, id, "term", &buf); err != nil || buf.String() != "child\n" {
		t.Fatalf("the child's mark of SIGTERM = %q, %v", buf.String(), err)
	}
}

// TestIsolationSweepsUnrecordedInstances: an agent that dies after
// starting an instance's init but before writing its state file leaves a
// process no state names; the next agent on the data dir stops it.
func TestIsolationSweepsUnrecordedInstances(t *testing.T) {
	a := isolatedAgent(t)
	id := a.startRes(t, idleBuild(), standby.Resources{})
	inst := a.runningInst(id)
	pid, tick := inst.pid, inst.startTick
	a.shutdown(t)
	// As if the agent had crashed before recording the instance.
	if err := os.Remove(a.statePath(id)); err != nil {
		t.Fatal(err)
	}
	if procGone(pid, tick) {
		t.Fatalf("instance %s (pid %d) did not outlive its agent", id, pid)
	}
	b := startAgent(t, a.dataDir, func(c *Config) {
		c.Isolation = IsolationOn
		c.UIDBase = 300000 + os.Getpid()%1000*100
	})
	if infos, _ := b.Instances(context.Background()); len(infos) != 0 {
		t.Fatalf("new agent adopted %v", infos)
	}
	// procGone counts a zombie as gone: the init is this test process's
	// child (agent A started it), so nobody else reaps it.
	waitUntil(t, "the unrecorded instance is stopped", func() bool { return procGone(pid, tick) })
}

// TestIsolationRefusesPlainInstancesRunDir: an isolated agent does not
// hide, under its run tmpfs, the state of instances a plain agent on the
// same data dir left running; it refuses to start and says why.
func TestIsolationRefusesPlainInstancesRunDir(t *testing.T) {
	probe := isolatedAgent(t) // skips or fails like the other isolation tests
	probe.shutdown(t)
	plain := startAgent(t, "", nil)
	id := plain.startRes(t, idleBuild(), standby.Resources{})
	plain.shutdown(t)
	_, err := New(Config{DataDir: plain.dataDir, HostID: "host_test", Name: "test", SelfExe: helperExe, Isolation: IsolationOn})
	if err == nil || !strings.Contains(err.Error(), "without isolation") {
		t.Fatalf("isolated agent on a plain agent's data dir: %v, want a refusal", err)
	}
	// The plain instance is still the plain agent's: it re-adopts it.
	again := startAgent(t, plain.dataDir, nil)
	if again.runningInst(id) == nil {
		t.Fatalf("instance %s was not re-adopted", id)
	}
}

// TestIsolationStopsAndStartsKeepUIDsApart: instances stopped while others
// start (their exits noticed by the waiter and the stop at once) free
// their uid once, so no two running instances ever share one.
func TestIsolationStopsAndStartsKeepUIDsApart(t *testing.T) {
	ta := isolatedAgent(t)
	const n = 16
	first := make([]string, n)
	for i := range first {
		first[i] = ta.startRes(t, idleBuild(), standby.Resources{})
	}
	var wg sync.WaitGroup
	second := make([]string, n)
	for i := range n {
		wg.Go(func() {
			if err := ta.StopInstance(context.Background(), first[i]); err != nil {
				t.Errorf("stop: %v", err)
			}
		})
		second[i] = standby.NewID(standby.PrefixInstance)
		wg.Go(func() {
			if _, err := ta.StartInstance(context.Background(), standby.InstanceSpec{ID: second[i], Build: idleBuild()}); err != nil {
				t.Errorf("start: %v", err)
			}
		})
	}
	wg.Wait()
	for _, id := range second {
		ta.waitEvent(t, id, standby.EventReady)
	}
	third := make([]string, n)
	for i := range third {
		third[i] = ta.startRes(t, idleBuild(), standby.Resources{})
	}
	seen := map[int]string{}
	for _, id := range append(second, third...) {
		inst := ta.runningInst(id)
		if inst == nil {
			t.Fatalf("instance %s is not running", id)
		}
		if other, dup := seen[inst.iso.UID]; dup {
			t.Fatalf("instances %s and %s both run as uid %d", other, id, inst.iso.UID)
		}
		seen[inst.iso.UID] = id
	}
}
