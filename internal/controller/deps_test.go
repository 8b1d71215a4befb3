package controller

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the import rules of STYLE.md: the controller uses
// standby.Store and standby.Agent only, never a concrete store, agent,
// api, client or cli package.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/standbyhq/standby/internal/controller").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/standbyhq/standby"
	for _, dep := range strings.Fields(string(out)) {
		if !strings.HasPrefix(dep, mod) {
			continue
		}
		switch rest := strings.TrimPrefix(dep, mod); {
		case rest == "", rest == "/internal/controller":
		default:
			t.Errorf("controller imports %s; it may use only the root package of this module", dep)
		}
	}
	if !strings.Contains(string(out), mod+"\n") {
		t.Errorf("go list -deps did not list the root package; is the test looking at the right package?")
	}
}
