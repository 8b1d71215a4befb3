// Command standbytest stands in for the standby binary in the agent's
// tests: argv[0] "standby" of a start_cmd runs it.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/standbyhq/standby/internal/echo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
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
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
