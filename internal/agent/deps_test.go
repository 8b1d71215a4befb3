package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the agent apart from the control plane (STYLE.md): it
// imports the root package and the standard library, never a store, the
// api or the controller.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/standbyhq/standby":                true,
		"github.com/standbyhq/standby/internal/agent": true,
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] {
			t.Errorf("internal/agent imports %s; it may import only the root package and the standard library", p)
		}
	}
}
