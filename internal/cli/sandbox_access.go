package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby"
)

// ExitError ends the command with Code and prints nothing more: `sandbox
// exec` exits with the command's own exit code.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

func (a *app) sandboxExec() *cobra.Command {
	var req standby.ExecRequest
	var env []string
	var stdin bool
	cmd := &cobra.Command{
		Use:   "exec <sandbox-id> -- <cmd> [args...]",
		Short: "Run a command inside a sandbox; prints its output and exits with its exit code",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Cmd = args[1:]
			if len(env) > 0 {
				req.Env = map[string]string{}
				for _, kv := range env {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return fmt.Errorf("--env %q: want NAME=value", kv)
					}
					req.Env[k] = v
				}
			}
			if stdin {
				b, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				req.Stdin = string(b)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.Exec(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprint(a.out(), res.Stdout)
			fmt.Fprint(a.opts.Stderr, res.Stderr)
			if res.StdoutTruncated || res.StderrTruncated {
				fmt.Fprintln(a.opts.Stderr, "standby: output truncated at 1 MiB per stream")
			}
			if res.TimedOut {
				fmt.Fprintln(a.opts.Stderr, "standby: command timed out and was killed")
				return &ExitError{Code: 124}
			}
			if res.ExitCode != 0 {
				code := res.ExitCode
				if code < 0 {
					code = 137
				}
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&env, "env", "e", nil, "NAME=value added to the command's env (repeatable)")
	f.StringVar(&req.Cwd, "cwd", "", "working directory, relative to the sandbox root")
	f.Int64Var(&req.TimeoutMS, "timeout-ms", 0, "kill the command after this many ms (default 60000)")
	f.BoolVarP(&stdin, "stdin", "i", false, "send this command's stdin to the command")
	return cmd
}

func (a *app) sandboxFiles() *cobra.Command {
	cmd := &cobra.Command{Use: "files", Short: "Read or write files inside a sandbox's root"}
	cmd.AddCommand(&cobra.Command{
		Use:   "get <sandbox-id> <path>",
		Short: "Print a file of the sandbox",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.ReadFile(cmd.Context(), args[0], args[1], a.out())
		},
	}, &cobra.Command{
		Use:   "put <sandbox-id> <path> [local-file]",
		Short: "Write a file into the sandbox (from local-file, else stdin)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = os.Stdin
			if len(args) == 3 {
				f, err := os.Open(args[2])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			return c.WriteFile(cmd.Context(), args[0], args[1], r)
		},
	})
	return cmd
}

func (a *app) sandboxArtefacts() *cobra.Command {
	var get string
	cmd := &cobra.Command{
		Use:   "artefacts <sandbox-id>",
		Short: "List a sandbox's artefacts, or print one with --get",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if get != "" {
				return c.ArtefactContent(cmd.Context(), args[0], get, a.out())
			}
			items, err := c.AllArtefacts(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			for _, it := range items {
				fmt.Fprintf(a.out(), "%s\t%d\t%s\n", it.Path, it.Size, fmtTime(it.ModifiedAt))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&get, "get", "", "print the content of this artefact")
	return cmd
}

func (a *app) sandboxStats() *cobra.Command {
	return &cobra.Command{
		Use:   "stats <sandbox-id>",
		Short: "Print a sandbox's usage and quotas (JSON)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			st, err := c.SandboxStats(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printJSON(st)
		},
	}
}
