package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"
)

// procStat is what the agent reads from /proc/<pid>/stat.
type procStat struct {
	state     byte   // field 3: R, S, D, Z, ...
	ppid      int    // field 4
	pgrp      int    // field 5
	utime     uint64 // field 14, clock ticks
	stime     uint64 // field 15, clock ticks
	startTime uint64 // field 22, clock ticks after boot
	rss       int64  // field 24, pages
}

// readStat parses /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so the fields are counted after its last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3, so field n is f[n-3].
	if len(f) < 22 {
		return procStat{}, errors.New("malformed stat")
	}
	var st procStat
	st.state = f[0][0]
	pgrp, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return procStat{}, fmt.Errorf("malformed stat: %w", err)
	}
	st.pgrp = pgrp
	st.ppid, _ = strconv.Atoi(string(f[1]))
	st.utime, _ = strconv.ParseUint(string(f[11]), 10, 64)
	st.stime, _ = strconv.ParseUint(string(f[12]), 10, 64)
	st.rss, _ = strconv.ParseInt(string(f[21]), 10, 64)
	if st.startTime, err = strconv.ParseUint(string(f[19]), 10, 64); err != nil {
		return procStat{}, fmt.Errorf("malformed stat: %w", err)
	}
	return st, nil
}

// dead reports whether st is a process that has finished running.
func (st procStat) dead() bool { return st.state == 'Z' || st.state == 'X' || st.state == 'x' }

// procGone reports whether the process started at startTick with pid is no
// longer running: gone, a zombie, or the pid now belongs to another process.
func procGone(pid int, startTick uint64) bool {
	st, err := readStat(pid)
	return err != nil || st.startTime != startTick || st.dead()
}

// groupAlive reports whether any live (non-zombie) process is in the
// process group. Zombies are skipped: their parent, not the agent, reaps
// them, and they run nothing.
func groupAlive(pgid int) bool {
	d, err := os.Open("/proc")
	if err != nil {
		// Without /proc, ask the kernel (zombies count here).
		return syscall.Kill(-pgid, 0) == nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err == nil && st.pgrp == pgid && !st.dead() {
			return true
		}
	}
	return false
}

// killGroup signals every process of the group led by pid.
func killGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}

// Linux waitid(2) values the syscall package lacks.
const (
	pPID         = 1
	sysPidfdOpen = 434 // the same number on every architecture
)

// peekExit reports whether the child pid has exited, without reaping it,
// so its process group id stays reserved while the rest is killed.
func peekExit(pid int) (bool, error) {
	var info [128]byte // siginfo_t; si_pid is the int32 at offset 16 on 64-bit Linux
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])),
			syscall.WEXITED|syscall.WNOHANG|syscall.WNOWAIT, 0, 0)
		switch e {
		case 0:
			return *(*int32)(unsafe.Pointer(&info[16])) != 0, nil
		case syscall.EINTR:
			continue
		default:
			return false, e
		}
	}
}

// reap collects the exit status of the child pid, if it is the agent's
// process's child and has exited.
func reap(pid int) (syscall.WaitStatus, bool) {
	var ws syscall.WaitStatus
	for {
		wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		return ws, err == nil && wpid == pid
	}
}

// waitReap blocks until the child pid exits and reaps it.
// Used only right after SIGKILL of a start that went wrong.
func waitReap(pid int) {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
			return
		}
	}
}

// exitReason says how a process ended, for the failed event.
func exitReason(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by signal %d", int(ws.Signal()))
	default:
		return "exited"
	}
}

// exitReason says how the instance's main process ended. An isolated
// instance's pid is its init's, which exits 128+n when start_cmd was
// killed by signal n.
func (inst *instance) exitReason(ws syscall.WaitStatus) string {
	if inst.iso != nil && ws.Exited() && ws.ExitStatus() > 128 && ws.ExitStatus() < 128+65 {
		return fmt.Sprintf("killed by signal %d", ws.ExitStatus()-128)
	}
	return exitReason(ws)
}

// pidfdOpen opens a pidfd for pid (Linux 5.3+), or returns -1.
func pidfdOpen(pid int) int {
	fd, _, e := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if e != 0 {
		return -1
	}
	syscall.CloseOnExec(int(fd))
	return int(fd)
}

// pollInterval is how often a process is checked when no pidfd is
// available to wake the agent at its exit.
const pollInterval = 250 * time.Millisecond

// waitFor blocks until gone() reports true (then returns true) or ctx ends
// (false). With a pidfd it sleeps in the runtime poller until the process
// exits, which wakes it at once; without one, or if the poller refuses
// the fd, it polls. It takes ownership of pidfd.
func waitFor(ctx context.Context, pidfd int, gone func() bool) bool {
	if pidfd >= 0 {
		done, ok := waitPidfd(ctx, pidfd, gone)
		if ok {
			return done
		}
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for !gone() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// waitPidfd waits on a pidfd in the runtime poller: it becomes readable when
// the process exits. ok is false when the poller cannot take the fd.
func waitPidfd(ctx context.Context, pidfd int, gone func() bool) (done, ok bool) {
	if err := syscall.SetNonblock(pidfd, true); err != nil {
		syscall.Close(pidfd)
		return false, false
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false, false
	}
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return false, false // not in the poller: deadlines unsupported
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(func(uintptr) bool { return gone() })
	if err == nil {
		return true, true
	}
	if ctx.Err() != nil {
		return false, true
	}
	return false, false
}

// waitChild waits for a child the agent started, kills what is left of its
// group while the main process is still an unreaped zombie (so the group id
// cannot have been reused), reaps it and closes inst.exited. It returns
// without reaping when the agent shuts down: the process keeps running.
func (a *Local) waitChild(inst *instance, pidfd int) {
	gone := func() bool {
		exited, err := peekExit(inst.pid)
		return exited || err != nil
	}
	if !waitFor(a.base, pidfd, gone) {
		return
	}
	killGroup(inst.pid, syscall.SIGKILL)
	var ws syscall.WaitStatus
	reason := "exited"
	for {
		wpid, err := syscall.Wait4(inst.pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err == nil && wpid == inst.pid {
			reason = inst.exitReason(ws)
		}
		break
	}
	inst.exitMsg = reason
	a.exitNoticed(inst)
}

// waitAdopted watches a re-adopted process, which is not the agent's child:
// a pidfd opened after the start time was checked (so it names the right
// process) or, failing that, polling of /proc/<pid>/stat.
func (a *Local) waitAdopted(inst *instance) {
	pidfd := pidfdOpen(inst.pid)
	gone := func() bool { return procGone(inst.pid, inst.startTick) }
	if pidfd >= 0 && gone() {
		// The pid may already name another process: do not wait on it.
		syscall.Close(pidfd)
		pidfd = -1
	}
	if !waitFor(a.base, pidfd, gone) {
		return
	}
	killGroup(inst.pid, syscall.SIGKILL)
	reason := "exited"
	// When the process is a child of this OS process after all (an agent
	// restarted within one process), reaping it here leaves no zombie.
	if ws, ok := reap(inst.pid); ok {
		reason = exitReason(ws)
	}
	inst.exitMsg = reason
	a.exitNoticed(inst)
}
