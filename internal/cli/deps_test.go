package cli_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the import rule of STYLE.md: the CLI talks to the server
// only through package client, so it imports the root package, client,
// cobra (with pflag) and the standard library, never a server package.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	allowed := map[string]bool{
		"github.com/standbyhq/standby":              true,
		"github.com/standbyhq/standby/client":       true,
		"github.com/standbyhq/standby/internal/cli": true,
		"github.com/spf13/cobra":                    true,
		"github.com/spf13/pflag":                    true,
		"github.com/inconshreveable/mousetrap":      true, // cobra's, on Windows
	}
	for _, p := range strings.Fields(string(out)) {
		if !allowed[p] {
			t.Errorf("internal/cli imports %s; it may import only the root package, client and cobra", p)
		}
	}
}
