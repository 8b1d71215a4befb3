package storetest_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the suite on the root package only, so every store can
// run it without pulling in another implementation.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/standbyhq/standby"
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, module) && dep != module && dep != module+"/internal/store/storetest" {
			t.Errorf("internal/store/storetest imports %s", dep)
		}
	}
}
