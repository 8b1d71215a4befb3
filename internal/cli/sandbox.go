package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/client"
)

func (a *app) sandboxCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "sandbox", Short: "Check out, inspect and stop sandboxes"}
	cmd.AddCommand(a.sandboxCreate(), a.sandboxList(), a.sandboxGet(), a.sandboxDelete(), a.sandboxLogs(), a.sandboxTimeout(),
		a.sandboxExec(), a.sandboxFiles(), a.sandboxArtefacts(), a.sandboxStats())
	return cmd
}

func (a *app) sandboxCreate() *cobra.Command {
	var (
		template, pool, mode, timeout, metadata, idemKey string
		waitMS                                           int
		labels, annotations, selectors, env              []string
		res                                              resourceFlags
	)
	cmd := &cobra.Command{
		Use:   "create --template REF [--pool twp_…] [--mode prefer|require|bypass] …",
		Short: "Check a sandbox out of a warm pool (or cold start one)",
		Example: `  standby sandbox create --template echo --pool twp_… --mode require --wait-ms 500
  standby sandbox create --template echo --selector region=eu,gpu=none --selector region=eu`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			req := client.CreateSandboxRequest{Template: template}
			if pool != "" || mode != "" || waitMS != 0 {
				req.WarmPool = &client.WarmPoolRef{ID: pool, Mode: mode, WaitMS: waitMS}
			}
			if fs.Changed("timeout-ms") {
				ms, err := parseMillis("--timeout-ms", timeout)
				if err != nil {
					return err
				}
				req.TimeoutMS = ms
			}
			r := res.over(fs, standby.Resources{})
			req.VCPUs, req.MemoryMB, req.DiskMB = r.VCPUs, r.MemoryMB, r.DiskMB
			var err error
			if req.Labels, err = parseKV("label", labels); err != nil {
				return err
			}
			if req.Annotations, err = parseKV("annotation", annotations); err != nil {
				return err
			}
			if req.Env, err = parseKV("env", env); err != nil {
				return err
			}
			if req.Selectors, err = parseSelectors(selectors); err != nil {
				return err
			}
			if fs.Changed("metadata") {
				if req.Metadata, err = parseMetadata(metadata); err != nil {
					return err
				}
			}
			var opts []client.RequestOption
			if idemKey != "" {
				opts = append(opts, client.WithIdempotencyKey(idemKey))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.CreateSandbox(cmd.Context(), req, opts...)
			if err != nil {
				return err
			}
			return a.showSandbox(sb)
		},
	}
	f := cmd.Flags()
	f.StringVar(&template, "template", "", "template ref: name, name:tag or name@tb_…")
	f.StringVar(&pool, "pool", "", "warm pool id to check out of")
	f.StringVar(&mode, "mode", "", "prefer (cold start if none ready), require (fail instead) or bypass (always cold); default the pool's checkout_policy")
	f.IntVar(&waitMS, "wait-ms", 0, "wait up to this many ms for a ready instance")
	f.StringVar(&timeout, "timeout-ms", "", "stop the sandbox after this long: ms or a duration (10m)")
	f.StringArrayVar(&labels, "label", nil, "sandbox label key=value (repeatable)")
	f.StringArrayVar(&annotations, "annotation", nil, "sandbox annotation key=value (repeatable)")
	f.StringArrayVar(&selectors, "selector", nil, "instance selector k=v[,k=v…], tried in the order given (repeatable)")
	f.StringArrayVar(&env, "env", nil, "environment K=V (repeatable; a warm instance cannot take it, so it cold starts)")
	f.StringVar(&metadata, "metadata", "", "metadata stored on the sandbox, a JSON object")
	f.StringVar(&idemKey, "idempotency-key", "", "send Idempotency-Key so a retry returns the same sandbox")
	res.add(f)
	return cmd
}

func sandboxHeader() []string {
	return []string{"ID", "STATE", "TEMPLATE", "ADDRESS", "PORTS", "SOURCE", "EXPIRES"}
}

func sandboxRow(s *standby.Sandbox) []string {
	source := s.WarmPoolCheckout.Source
	if s.WarmPoolCheckout.ID != "" {
		source += " (" + s.WarmPoolCheckout.ID + ")"
	}
	return []string{s.ID, s.State, s.Template, s.Address, fmtPorts(s.Ports), source, fmtTime(s.ExpiresAt)}
}

// showSandbox prints the sandbox's row, then its address and each port on
// a line of its own so they are easy to pick out (and to cut from a
// script).
func (a *app) showSandbox(s *standby.Sandbox) error {
	return a.show(s, func() error {
		if err := a.table(sandboxHeader(), [][]string{sandboxRow(s)}); err != nil {
			return err
		}
		w := a.out()
		fmt.Fprintln(w)
		fmt.Fprintf(w, "address %s\n", orDash(s.Address))
		for _, name := range standby.SortedKeys(s.Ports) {
			fmt.Fprintf(w, "port %s %d\n", name, s.Ports[name])
		}
		if s.Error != nil && *s.Error != "" {
			fmt.Fprintf(w, "error %s\n", *s.Error)
		}
		return nil
	})
}

func (a *app) sandboxList() *cobra.Command {
	var o client.SandboxListOptions
	var labels []string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sandboxes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Labels, err = parseKV("label", labels); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sbs, err := c.AllSandboxes(cmd.Context(), o)
			if err != nil {
				return err
			}
			return a.show(sbs, func() error {
				rows := make([][]string, len(sbs))
				for i := range sbs {
					rows[i] = sandboxRow(&sbs[i])
				}
				return a.table(sandboxHeader(), rows)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.State, "state", "", "only sandboxes in this state")
	f.StringVar(&o.Template, "template", "", "only sandboxes of this template")
	f.StringVar(&o.WarmPoolID, "pool", "", "only sandboxes checked out of this pool")
	f.StringArrayVar(&labels, "label", nil, "only sandboxes with label key=value (repeatable)")
	return cmd
}

func (a *app) sandboxGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get <sandbox-id>",
		Short: "Show a sandbox",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.GetSandbox(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.showSandbox(sb)
		},
	}
}

func (a *app) sandboxDelete() *cobra.Command {
	return &cobra.Command{
		Use:   "delete <sandbox-id>...",
		Short: "Stop sandboxes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := c.DeleteSandbox(cmd.Context(), id); err != nil {
					return err
				}
				if !a.json {
					fmt.Fprintf(a.out(), "stopping sandbox %s\n", id)
				}
			}
			return nil
		},
	}
}

func (a *app) sandboxLogs() *cobra.Command {
	var opt standby.LogOptions
	cmd := &cobra.Command{
		Use:   "logs <sandbox-id>",
		Short: "Print a sandbox's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opt.Stream != "" && opt.Stream != "stdout" && opt.Stream != "stderr" {
				return fmt.Errorf("--stream %q: want stdout or stderr", opt.Stream)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			err = c.SandboxLogs(cmd.Context(), args[0], opt, a.out())
			if opt.Follow && errors.Is(err, context.Canceled) && cmd.Context().Err() != nil {
				return nil // Ctrl-C ends a follow; that is not a failure
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&opt.Stream, "stream", "stdout", "stdout or stderr")
	f.IntVar(&opt.Tail, "tail", 0, "only the last N lines")
	f.BoolVarP(&opt.Follow, "follow", "f", false, "keep printing new output until the sandbox stops")
	return cmd
}

func (a *app) sandboxTimeout() *cobra.Command {
	return &cobra.Command{
		Use:   "timeout <sandbox-id> <ms>",
		Short: "Make a sandbox expire this long from now (ms, or a duration like 10m)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ms, err := parseMillis("timeout", args[1])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			sb, err := c.SetSandboxTimeout(cmd.Context(), args[0], ms)
			if err != nil {
				return err
			}
			if sb == nil {
				if sb, err = c.GetSandbox(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			return a.showSandbox(sb)
		},
	}
}
