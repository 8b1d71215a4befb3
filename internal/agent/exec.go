package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/standbyhq/standby"
)

// execJob is an exec ready to run: argv, the full env, the working dir
// (as the process sees it), stdin and the deadline.
type execJob struct {
	Argv    []string      `json:"argv"`
	Env     []string      `json:"env"`
	Dir     string        `json:"dir"`
	Stdin   string        `json:"stdin"`
	Timeout time.Duration `json:"timeout"`
}

// spawnFunc starts a process and returns its pid and a channel that
// receives its wait status. The init reaps every process of the sandbox
// itself, so it cannot use os.Process.Wait; the agent's spawn can.
type spawnFunc func(exe string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error)

// Exec runs req inside the instance: through its init (isolation on), or
// as a child process group in its root (isolation none).
func (a *Local) Exec(ctx context.Context, id string, req standby.ExecRequest) (standby.ExecResult, error) {
	var errs standby.Errors
	if len(req.Cmd) == 0 || req.Cmd[0] == "" {
		errs.Add("cmd", "is required: a non-empty argv array")
	}
	if req.Cwd != "" {
		if err := standby.ValidateRelPath(req.Cwd); err != nil {
			errs.Add("cwd", "%v", err)
		}
	}
	if req.TimeoutMS < 0 || req.TimeoutMS > standby.MaxExecTimeoutMS {
		errs.Add("timeout_ms", "must be between 0 and %d", standby.MaxExecTimeoutMS)
	}
	standby.ValidateEnv("env", req.Env, &errs)
	if err := errs.Err(); err != nil {
		return standby.ExecResult{}, err
	}
	inst := a.runningInst(id)
	if inst == nil {
		return standby.ExecResult{}, standby.Errorf(standby.ENotFound, "instance %s is not running", id)
	}
	job := execJob{Argv: req.Cmd, Stdin: req.Stdin, Timeout: time.Duration(req.TimeoutMS) * time.Millisecond}
	if job.Timeout == 0 {
		job.Timeout = standby.DefaultExecTimeoutMS * time.Millisecond
	}
	env := map[string]string{}
	for _, kv := range inst.env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, v := range req.Env {
		env[k] = v
	}
	for _, k := range standby.SortedKeys(env) {
		job.Env = append(job.Env, k+"="+env[k])
	}
	if inst.iso != nil {
		job.Dir = sandboxDir
		if req.Cwd != "" {
			job.Dir = path.Join(sandboxDir, req.Cwd)
		} else if inst.spec.Build.Workdir != "" {
			job.Dir = path.Join(sandboxDir, inst.spec.Build.Workdir)
		}
		return execRemote(ctx, inst.sockPath(), job)
	}
	root := inst.root()
	job.Dir = root
	if req.Cwd != "" {
		job.Dir = filepath.Join(root, filepath.FromSlash(path.Clean(req.Cwd)))
	} else if inst.spec.Build.Workdir != "" {
		job.Dir = filepath.Join(root, filepath.FromSlash(path.Clean(inst.spec.Build.Workdir)))
	}
	return runExec(ctx, job, nil, spawnChild)
}

// runningInst returns the running instance id, or nil.
func (a *Local) runningInst(id string) *instance {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running[id]
}

// spawnChild starts a child of the agent and waits for it in a goroutine.
func spawnChild(exe string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	pid, err := syscall.ForkExec(exe, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if err != syscall.EINTR {
				break
			}
		}
		ch <- ws
	}()
	return pid, ch, nil
}

// runExec runs job to completion: stdin written, stdout and stderr
// captured up to MaxExecOutput each. At the timeout (or when ctx ends) the
// whole process tree is killed; when the command returns, whatever it left
// running in its process group or below it is killed too, so an exec never
// leaves processes behind. cred, when set, is the uid it runs as.
func runExec(ctx context.Context, job execJob, cred *syscall.Credential, spawn spawnFunc) (standby.ExecResult, error) {
	pathEnv := defaultPath
	for _, kv := range job.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	exe, err := lookPath(job.Argv[0], pathEnv, job.Dir)
	if err != nil {
		return standby.ExecResult{}, standby.FieldError("cmd", "%v", err)
	}
	if fi, err := os.Stat(job.Dir); err != nil || !fi.IsDir() {
		return standby.ExecResult{}, standby.FieldError("cwd", "is not a directory in the sandbox")
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return standby.ExecResult{}, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return standby.ExecResult{}, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return standby.ExecResult{}, err
	}
	pid, done, err := spawn(exe, job.Argv, &syscall.ProcAttr{
		Dir:   job.Dir,
		Env:   job.Env,
		Files: []uintptr{inR.Fd(), outW.Fd(), errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: cred},
	})
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENOEXEC) {
			return standby.ExecResult{}, standby.FieldError("cmd", "cannot run %s: %v", job.Argv[0], err)
		}
		return standby.ExecResult{}, err
	}
	go func() {
		_, _ = io.WriteString(inW, job.Stdin)
		inW.Close()
	}()
	var wg sync.WaitGroup
	stdout, stderr := &capped{max: standby.MaxExecOutput}, &capped{max: standby.MaxExecOutput}
	for _, c := range []struct {
		r *os.File
		w *capped
	}{{outR, stdout}, {errR, stderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(c.w, c.r)
		}()
	}
	timer := time.NewTimer(job.Timeout)
	defer timer.Stop()
	var res standby.ExecResult
	var ws syscall.WaitStatus
	select {
	case ws = <-done:
	case <-timer.C:
		res.TimedOut = true
		killTree(pid)
		ws = <-done
	case <-ctx.Done():
		killTree(pid)
		ws = <-done
	}
	killTree(pid)
	// Output still open in a process that escaped the tree must not hold
	// the call past its deadline.
	captured := make(chan struct{})
	go func() {
		wg.Wait()
		close(captured)
	}()
	select {
	case <-captured:
	case <-timer.C:
	case <-ctx.Done():
	}
	outR.Close()
	errR.Close()
	<-captured
	switch {
	case ws.Exited() && !res.TimedOut:
		res.ExitCode = ws.ExitStatus()
	default:
		res.ExitCode = -1
	}
	res.Stdout, res.StdoutTruncated = stdout.String(), stdout.truncated
	res.Stderr, res.StderrTruncated = stderr.String(), stderr.truncated
	return res, nil
}

// capped keeps the first max bytes written and drops the rest, so a
// chatty command cannot fill the agent's memory.
type capped struct {
	bytes.Buffer
	max       int
	truncated bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room < len(p) {
		c.truncated = true
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// killTree kills pid, its process group and every process below it. It
// stops them first, so none can fork or be reparented (and so lost from
// the tree) while the tree is collected, then kills them all.
func killTree(pid int) {
	stopped := map[int]bool{}
	for round := 0; round < 100; round++ {
		procs := listProcs()
		tree := map[int]bool{pid: true}
		for grew := true; grew; {
			grew = false
			for p, st := range procs {
				if !tree[p] && (tree[st.ppid] || st.pgrp == pid) {
					tree[p] = true
					grew = true
				}
			}
		}
		more := false
		for p := range tree {
			if !stopped[p] {
				stopped[p] = true
				more = true
				_ = syscall.Kill(p, syscall.SIGSTOP)
			}
		}
		if !more {
			break
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for p := range stopped {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// listProcs reads every live process's stat.
func listProcs() map[int]procStat {
	out := map[int]procStat{}
	d, err := os.Open("/proc")
	if err != nil {
		return out
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		pid := 0
		for _, c := range n {
			if c < '0' || c > '9' {
				pid = -1
				break
			}
			pid = pid*10 + int(c-'0')
		}
		if pid <= 0 {
			continue
		}
		if st, err := readStat(pid); err == nil && !st.dead() {
			out[pid] = st
		}
	}
	return out
}

// execRemote sends job to an isolated instance's init, which runs it in
// the instance's namespaces, cgroup and uid. Closing the connection (ctx
// ended) makes the init kill the exec.
func execRemote(ctx context.Context, socket string, job execJob) (standby.ExecResult, error) {
	// A socket path may hold 107 bytes; the run dir's path may be longer,
	// so the socket is reached through an fd of its dir.
	dir, err := os.Open(filepath.Dir(socket))
	if err != nil {
		return standby.ExecResult{}, standby.Errorf(standby.EUnavailable, "instance does not take commands: %v", err)
	}
	defer dir.Close()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(socket)))
	if err != nil {
		return standby.ExecResult{}, standby.Errorf(standby.EUnavailable, "instance does not take commands: %v", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := json.NewEncoder(c).Encode(job); err != nil {
		return standby.ExecResult{}, fmt.Errorf("send exec: %w", err)
	}
	var reply initReply
	if err := json.NewDecoder(c).Decode(&reply); err != nil {
		if ctx.Err() != nil {
			return standby.ExecResult{}, ctx.Err()
		}
		return standby.ExecResult{}, standby.Errorf(standby.EUnavailable, "exec: the instance ended before answering")
	}
	switch {
	case reply.Result != nil:
		return *reply.Result, nil
	case reply.Field != "":
		return standby.ExecResult{}, standby.FieldError(reply.Field, "%s", reply.Error)
	default:
		return standby.ExecResult{}, fmt.Errorf("exec: %s", reply.Error)
	}
}
