package echo

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the built-in processes on the standard library: they run
// inside instances and must not drag in the control plane.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/standbyhq/standby/internal/echo" {
			t.Errorf("internal/echo imports %s; it may import only the standard library", p)
		}
	}
}
