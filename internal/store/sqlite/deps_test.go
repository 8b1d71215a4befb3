package sqlite_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps the store's imports to the root package, its driver and
// migrations: never api, controller, agent or another store.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/standbyhq/standby"
	allowed := map[string]bool{module: true, module + "/internal/store/sqlite": true}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, module) && !allowed[dep] {
			t.Errorf("internal/store/sqlite imports %s", dep)
		}
	}
}
