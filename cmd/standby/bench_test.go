package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// bench runs in this test binary, so the agent's "standby" argv[0] (its own
// executable) and bench's spawn-limit phase start this binary as
// `echo-server` or `idle`: serve those like the real binary would instead
// of running the tests again.
func init() {
	if len(os.Args) > 1 && (os.Args[1] == "echo-server" || os.Args[1] == "idle") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
}

func TestBenchJSONHasEveryFigure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and a few hundred processes")
	}
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"bench", "--json", "--duration", "1s", "--concurrency", "8",
		"--checkouts", "300", "--warmup-n", "5", "--cold-n", "5",
		// This test binary cannot serve as the agent's isolation init.
		"--isolation", "none"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("bench exited %d\nstderr:\n%s", code, stderr.String())
	}
	var res map[string]map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("bench output is not one JSON object: %v\n%s", err, stdout.String())
	}
	positive := func(section string, fields ...string) {
		t.Helper()
		for _, f := range fields {
			v, ok := res[section][f].(float64)
			if !ok || v <= 0 {
				t.Errorf("%s.%s = %v, want a positive number", section, f, res[section][f])
			}
		}
	}
	latency := []string{"c1_p50_us", "c1_p99_us", "c32_p50_us", "c32_p99_us", "c32_rps"}
	positive("noop", latency...)
	positive("checkout", append(latency, "ratio_c1_p50", "ratio_c32_rps", "hits")...)
	positive("warmup", "n", "rounds", "seconds", "per_s", "spawn_limit_per_s", "ratio")
	positive("cold_vs_warm", "cold_p50_us", "warm_p50_us", "ratio")
	positive("memory", "bytes_per_ready_instance")
	positive("machine", "cores", "fsync_us")
	for _, f := range []string{"misses", "duplicates"} {
		if v, ok := res["checkout"][f].(float64); !ok || v != 0 {
			t.Errorf("checkout.%s = %v, want 0", f, res["checkout"][f])
		}
	}
	// Every checkout of both phases hit: 300 concurrent and a tenth of it
	// sequentially.
	if v := res["checkout"]["hits"]; v != float64(330) {
		t.Errorf("checkout.hits = %v, want 330", v)
	}
	if v := res["warmup"]["n"]; v != float64(5) {
		t.Errorf("warmup.n = %v, want 5", v)
	}
	for _, f := range []string{"go_version", "store", "durability", "isolation", "limits"} {
		if s, _ := res["machine"][f].(string); s == "" {
			t.Errorf("machine.%s is empty", f)
		}
	}
	if d, _ := res["machine"]["durability"].(string); !strings.Contains(d, "synchronous=FULL") {
		t.Errorf("machine.durability = %q, want the FULL setting the server runs with", d)
	}
	if t.Failed() {
		t.Logf("output:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	}
}
