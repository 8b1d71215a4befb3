// Command standbytest stands in for the standby binary in the agent's
// tests: argv[0] "standby" of a start_cmd runs it.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/standbyhq/standby/internal/agent"
	"github.com/standbyhq/standby/internal/echo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if len(os.Args) >= 2 && os.Args[1] == agent.InitCommand {
		os.Exit(agent.SandboxInit(func(args []string) func(context.Context) error {
			if len(args) == 1 && args[0] == "idle" {
				return echo.Idle
			}
			if len(args) == 1 && args[0] == "echo-server" {
				return func(ctx context.Context) error { return echo.Serve(ctx, "127.0.0.1:"+os.Getenv("PORT")) }
			}
			return nil
		}))
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: standbytest echo-server|idle|flaky-server")
		os.Exit(2)
	}
	addr := "127.0.0.1:" + os.Getenv("PORT")
	var err error
	switch os.Args[1] {
	case "echo-server":
		err = echo.Serve(ctx, addr)
	case "idle":
		err = echo.Idle(ctx)
	case "flaky-server":
		// Healthy until a file named "sick" appears in the working dir.
		err = http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := os.Stat("sick"); err == nil {
				http.Error(w, "sick", http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, "ok")
		}))
	case "alloc":
		// Touch N MiB, one page at a time, then idle: killed by the OOM
		// killer when N passes the memory limit.
		n, _ := strconv.Atoi(os.Args[2])
		mem := make([][]byte, 0, n)
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			mem = append(mem, b)
		}
		fmt.Println("allocated", len(mem), "MiB")
		err = echo.Idle(ctx)
	case "spin":
		// Busy loop on one core until stopped.
		for ctx.Err() == nil {
			for i := 0; i < 1e6; i++ {
			}
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
