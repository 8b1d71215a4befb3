package agent

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// spawner starts isolated instances' inits from one OS thread of the
// agent whose mount namespace holds the root skeleton only, already
// pivoted into: the thread unshares its filesystem context and mount
// namespace, mounts the skeleton (mountSkeleton) and pivots into it once,
// at agent start. An init cloned from that thread with a new mount
// namespace copies those few mounts and starts in its root, so it needs
// no pivot_root and no unmount of its own.
//
// Why: a pivot_root walks every thread of the host (chroot_fs_refs), and
// detaching the old root waits for an expedited RCU grace period that the
// whole host serialises on. Paid by every init, both grew with the
// instances running, and perf of a 100-instance warmup showed inits
// blocked there more than anywhere else. Nothing of the host is in the
// spawner's namespace either, so no init's copy holds a host mount.
type spawner struct {
	fns  chan func()
	stop chan struct{} // closed by close
	done chan struct{} // closed when the thread has ended
}

// startSpawner starts the spawner thread with the skeleton of selfExe
// mounted at dir (in the thread's namespace only; dir is its mount point,
// left empty on the host).
func startSpawner(dir, selfExe string) (*spawner, error) {
	s := &spawner{fns: make(chan func()), stop: make(chan struct{}), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			s.run(dir, selfExe, errc, nil)
			return
		}
		// The main thread must keep the host's view: /proc/self is the
		// main thread's (the cgroups library reads its mountinfo). Held
		// here, it is not the thread the next goroutine locks.
		locked := make(chan struct{})
		go s.run(dir, selfExe, errc, locked)
		<-locked
		runtime.UnlockOSThread()
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return s, nil
}

// run is the spawner's thread: it enters the skeleton and runs what start
// hands it until close. locked, when set, is closed once it has its thread.
func (s *spawner) run(dir, selfExe string, errc chan<- error, locked chan<- struct{}) {
	defer close(s.done)
	// Never unlocked: the thread ends with this goroutine, taking its
	// namespace and filesystem context with it, and no other goroutine
	// ever runs on it.
	runtime.LockOSThread()
	if locked != nil {
		close(locked)
	}
	if err := enterSkeleton(dir, selfExe); err != nil {
		errc <- err
		return
	}
	errc <- nil
	for {
		select {
		case fn := <-s.fns:
			fn()
		case <-s.stop:
			return
		}
	}
}

// enterSkeleton gives the calling (locked) thread a mount namespace of
// its own whose root is the skeleton mounted at dir.
func enterSkeleton(dir, selfExe string) error {
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("spawner: unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("spawner: make mounts private: %w", err)
	}
	if err := mountSkeleton(dir, selfExe); err != nil {
		return fmt.Errorf("spawner: %w", err)
	}
	if err := unix.Chdir(dir); err != nil {
		return fmt.Errorf("spawner: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one;
	// detaching it leaves only the skeleton in this namespace.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("spawner: pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("spawner: detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// start runs os.StartProcess on the spawner's thread: name and attr.Dir
// are paths in the skeleton.
func (s *spawner) start(name string, argv []string, attr *os.ProcAttr) (proc *os.Process, err error) {
	ran := make(chan struct{})
	select {
	case s.fns <- func() {
		defer close(ran)
		proc, err = os.StartProcess(name, argv, attr)
	}:
	case <-s.done:
		return nil, fmt.Errorf("spawner: stopped")
	}
	<-ran
	return proc, err
}

// close ends the spawner's thread after the start in progress, if any;
// later starts fail.
func (s *spawner) close() {
	close(s.stop)
	<-s.done
}
