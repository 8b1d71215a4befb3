// Command standby is the whole product in one binary: `standby serve` runs
// the control plane with a local agent; every other command is the CLI that
// talks to a server over its HTTP API.
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/standbyhq/standby/internal/agent"
	"github.com/standbyhq/standby/internal/cli"
)

func main() {
	// An isolated instance's init starts with every instance: building
	// the CLI first cost it as much CPU as its own work did.
	if len(os.Args) == 2 && os.Args[1] == agent.InitCommand {
		os.Exit(agent.SandboxInit(inProcessBuiltin))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs the command line args and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		cli.PrintError(stderr, err)
		var ee *cli.ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		return 1
	}
	return 0
}
