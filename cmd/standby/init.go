package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby/internal/agent"
)

// newSandboxInitCommand is the init of an isolated instance: the local
// agent starts this binary as `standby sandbox-init` in the instance's new
// namespaces (agent.SandboxInit). Not for people.
func newSandboxInitCommand() *cobra.Command {
	return &cobra.Command{
		Use:                agent.InitCommand,
		Short:              "Init of an isolated instance (started by the agent)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(*cobra.Command, []string) {
			os.Exit(agent.SandboxInit(inProcessBuiltin))
		},
	}
}

// inProcessBuiltin runs the built-in templates' processes (echo-server,
// idle) in an isolated instance's init rather than as a second process.
func inProcessBuiltin(args []string) func(context.Context) error {
	var cmd *cobra.Command
	switch {
	case len(args) == 0:
		return nil
	case args[0] == "echo-server":
		cmd = newEchoServerCommand()
	case args[0] == "idle":
		cmd = newIdleCommand()
	default:
		return nil
	}
	cmd.SetArgs(args[1:])
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	return cmd.ExecuteContext
}
