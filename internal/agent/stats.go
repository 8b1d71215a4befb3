package agent

import (
	"context"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/standbyhq/standby"
)

// clockTick is the kernel's USER_HZ: /proc times are in 1/100 s on Linux.
const clockTick = 10 * time.Millisecond

// Stats reads the instance's usage: from its cgroup with isolation, else
// from its process group in /proc (CPU and resident memory of the processes
// still running) and the size of its root's files.
func (a *Local) Stats(ctx context.Context, id string) (standby.InstanceStats, error) {
	inst := a.runningInst(id)
	if inst == nil {
		return standby.InstanceStats{}, standby.Errorf(standby.ENotFound, "instance %s is not running", id)
	}
	now := time.Now()
	res := inst.spec.Resources.WithDefaults()
	st := standby.InstanceStats{
		Uptime:    int64(now.Sub(inst.startedAt) / time.Second),
		Isolation: a.isolation,
	}
	st.Usage.Time = a.clock.Now()
	var cpuNs uint64
	var cg *cgroup
	if inst.iso != nil {
		cg, _ = inst.iso.cgroup()
	}
	if cg != nil {
		var err error
		cpuNs, st.Usage.Mem, err = cg.usage()
		if err != nil {
			return st, err
		}
		_ = inst.useRoot(func(root string) error {
			var fsst syscall.Statfs_t
			err := syscall.Statfs(root, &fsst)
			if err == nil {
				st.Usage.Disk = int64(fsst.Blocks-fsst.Bfree) * fsst.Bsize
			}
			return err
		})
		st.Cgroup = true
		st.MemQuota = int64(res.MemoryMB) << 20
		st.DiskQuota = int64(res.DiskMB) << 20
		st.CPUQuota = res.VCPUs
	} else {
		for _, p := range listProcs() {
			if p.pgrp == inst.pid {
				cpuNs += (p.utime + p.stime) * uint64(clockTick)
				st.Usage.Mem += p.rss * int64(syscall.Getpagesize())
			}
		}
		_ = filepath.WalkDir(inst.root(), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					st.Usage.Disk += fi.Size()
				}
			}
			return nil
		})
	}
	inst.statMu.Lock()
	from, fromCPU := inst.lastAt, inst.lastCPU
	if from.IsZero() {
		from, fromCPU = inst.startedAt, 0
	}
	if el := now.Sub(from); el > 0 && cpuNs >= fromCPU {
		st.Usage.CPU = float64(cpuNs-fromCPU) / float64(el)
	}
	inst.lastAt, inst.lastCPU = now, cpuNs
	inst.statMu.Unlock()
	return st, nil
}
