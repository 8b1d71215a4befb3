package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the import rule of STYLE.md: the client imports the root
// package and the standard library only, so users get no other dependency.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/standbyhq/standby":        true,
		"github.com/standbyhq/standby/client": true,
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] {
			t.Errorf("client imports %s; it may import only the root package and the standard library", p)
		}
	}
}
