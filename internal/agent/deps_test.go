package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the agent apart from the control plane (STYLE.md): of
// this module it imports only the root package, never a store, the api or
// the controller; outside the standard library only the cgroup library
// (and what it needs to describe limits) and x/sys for mount syscalls.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \"\\n\"}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	direct := []string{
		"github.com/standbyhq/standby",
		"github.com/containerd/cgroups/v3",
		"github.com/opencontainers/runtime-spec/specs-go",
		"golang.org/x/sys/unix",
	}
	for _, p := range strings.Fields(string(out)) {
		ok := !strings.Contains(strings.SplitN(p, "/", 2)[0], ".")
		for _, d := range direct {
			ok = ok || p == d || strings.HasPrefix(p, d+"/")
		}
		if !ok {
			t.Errorf("internal/agent imports %s; allowed: the standard library, %v", p, direct)
		}
	}
	out, err = exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/standbyhq/standby/") && p != "github.com/standbyhq/standby/internal/agent" {
			t.Errorf("internal/agent depends on %s; of this module it may use only the root package", p)
		}
	}
}
