package cli

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/client"
)

func (a *app) projectCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "project", Short: "Manage projects (admin keys)"}
	header := []string{"ID", "NAME", "CREATED"}
	row := func(p *standby.Project) []string { return []string{p.ID, p.Name, fmtTime(p.CreatedAt)} }
	showOne := func(p *standby.Project) error {
		return a.show(p, func() error { return a.table(header, [][]string{row(p)}) })
	}
	create := &cobra.Command{
		Use:   "create <name>",
		Short: "Create a project",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.CreateProject(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return showOne(p)
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List projects",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ps, err := c.AllProjects(cmd.Context(), client.ListOptions{})
			if err != nil {
				return err
			}
			return a.show(ps, func() error {
				rows := make([][]string, len(ps))
				for i := range ps {
					rows[i] = row(&ps[i])
				}
				return a.table(header, rows)
			})
		},
	}
	get := &cobra.Command{
		Use:   "get <project-id>",
		Short: "Show a project",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetProject(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return showOne(p)
		},
	}
	cmd.AddCommand(create, list, get)
	return cmd
}

func (a *app) keyCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage API keys (admin keys)"}
	header := []string{"ID", "NAME", "ROLE", "PREFIX", "CREATED", "REVOKED"}
	row := func(k *standby.APIKey) []string {
		return []string{k.ID, k.Name, k.Role, k.Prefix, fmtTime(k.CreatedAt), fmtTimePtr(k.RevokedAt)}
	}
	var name, role string
	create := &cobra.Command{
		Use:   "create <project-id> --name NAME [--role admin|developer|viewer]",
		Short: "Create an API key; its secret is printed this once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			k, err := c.CreateAPIKey(cmd.Context(), args[0], name, role)
			if err != nil {
				return err
			}
			return a.show(k, func() error {
				if err := a.table(header, [][]string{row(k)}); err != nil {
					return err
				}
				fmt.Fprintf(a.out(), "\nsecret %s\n", k.Secret)
				fmt.Fprintln(a.opts.Stderr, "Save the secret now: it is not shown again.")
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "key name")
	create.Flags().StringVar(&role, "role", standby.RoleDeveloper, "admin, developer or viewer")
	list := &cobra.Command{
		Use:   "list <project-id>",
		Short: "List a project's keys",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			ks, err := c.AllAPIKeys(cmd.Context(), args[0], client.ListOptions{})
			if err != nil {
				return err
			}
			return a.show(ks, func() error {
				rows := make([][]string, len(ks))
				for i := range ks {
					rows[i] = row(&ks[i])
				}
				return a.table(header, rows)
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke <key-id>",
		Short: "Revoke a key at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.RevokeAPIKey(cmd.Context(), args[0]); err != nil {
				return err
			}
			if !a.json {
				fmt.Fprintf(a.out(), "revoked key %s\n", args[0])
			}
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (a *app) hostCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "host", Short: "Inspect the hosts running agents"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			hs, err := c.AllHosts(cmd.Context(), client.ListOptions{})
			if err != nil {
				return err
			}
			return a.show(hs, func() error {
				rows := make([][]string, len(hs))
				for i, h := range hs {
					rows[i] = []string{h.ID, h.Name, h.State, h.Address, h.Isolation,
						strconv.FormatFloat(h.Capacity.VCPUs, 'g', -1, 64), strconv.Itoa(h.Capacity.MemoryMB),
						strconv.Itoa(h.MaxInstances), fmtTime(h.LastHeartbeatAt)}
				}
				return a.table([]string{"ID", "NAME", "STATE", "ADDRESS", "ISOLATION", "VCPUS", "MEMORY_MB", "MAX_INSTANCES", "HEARTBEAT"}, rows)
			})
		},
	}
	cmd.AddCommand(list)
	return cmd
}
