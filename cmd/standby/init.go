package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby/internal/agent"
)

// newSandboxInitCommand is the init of an isolated instance: the local
// agent starts this binary as `standby sandbox-init` in the instance's new
// namespaces (agent.SandboxInit). Not for people.
func newSandboxInitCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "sandbox-init",
		Short:              "Init of an isolated instance (started by the agent)",
		Hidden:             true,
		DisableFlagParsing: true,
		Run: func(*cobra.Command, []string) {
			os.Exit(agent.SandboxInit())
		},
	}
}
