package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/client"
)

func (a *app) templateCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "template", Short: "Manage templates (named, versioned recipes for instances)"}

	var desc string
	var labels []string
	create := &cobra.Command{
		Use:   "create <name>",
		Short: "Create a template; add builds with `standby build create`",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseKV("label", labels)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.CreateTemplate(cmd.Context(), client.CreateTemplateRequest{Name: args[0], Description: desc, Labels: lm})
			if err != nil {
				return err
			}
			return a.showTemplate(t)
		},
	}
	create.Flags().StringVar(&desc, "description", "", "description")
	create.Flags().StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")

	var listLabels []string
	list := &cobra.Command{
		Use:   "list",
		Short: "List templates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseKV("label", listLabels)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ts, err := c.AllTemplates(cmd.Context(), client.ListOptions{Labels: lm})
			if err != nil {
				return err
			}
			return a.show(ts, func() error {
				rows := make([][]string, len(ts))
				for i, t := range ts {
					rows[i] = []string{t.Name, strconv.FormatBool(t.Builtin), strings.Join(standby.SortedKeys(t.Tags), ","), fmtMap(t.Labels), t.Description}
				}
				return a.table([]string{"NAME", "BUILTIN", "TAGS", "LABELS", "DESCRIPTION"}, rows)
			})
		},
	}
	list.Flags().StringArrayVar(&listLabels, "label", nil, "only templates with label key=value (repeatable)")

	get := &cobra.Command{
		Use:   "get <name>",
		Short: "Show a template and its tags",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.GetTemplate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.showTemplate(t)
		},
	}

	del := &cobra.Command{
		Use:   "delete <name>",
		Short: "Delete a template and its builds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteTemplate(cmd.Context(), args[0]); err != nil {
				return err
			}
			if !a.json {
				fmt.Fprintf(a.out(), "deleted template %s\n", args[0])
			}
			return nil
		},
	}
	cmd.AddCommand(create, list, get, del)
	return cmd
}

func (a *app) showTemplate(t *standby.Template) error {
	return a.show(t, func() error {
		kv := [][2]string{
			{"name", t.Name},
			{"id", t.ID},
			{"description", t.Description},
			{"builtin", strconv.FormatBool(t.Builtin)},
			{"labels", fmtMap(t.Labels)},
		}
		for _, tag := range standby.SortedKeys(t.Tags) {
			kv = append(kv, [2]string{"tag " + tag, t.Tags[tag]})
		}
		kv = append(kv, [2]string{"created", fmtTime(t.CreatedAt)})
		return a.fields(kv)
	})
}

func (a *app) buildCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "build", Short: "Create and inspect immutable builds of a template"}

	var (
		shell, workdir, readiness, health string
		argv, ports, env, files, tags     []string
		res                               resourceFlags
	)
	create := &cobra.Command{
		Use:   "create <template> [--cmd 'shell command' | --arg a --arg b | -- argv...]",
		Short: "Create a build (moves tag latest, and --tag, to it)",
		Long: `Create an immutable build of a template.

The command to run is either a shell command (--cmd 'python3 -m http.server $PORT',
run with /bin/sh -c), or an argv given as repeated --arg or after --:

  standby build create web --port http --readiness http:/ -- python3 -m http.server '${PORT}'

${VAR} in the argv is expanded from the instance's environment (PORT, PORT_<NAME>, --env).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			startCmd := argv
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				if dash != 1 {
					return fmt.Errorf("give the template name before --")
				}
				if len(argv) > 0 || shell != "" {
					return fmt.Errorf("give the command once: --cmd, --arg or after --")
				}
				startCmd = args[1:]
			} else if len(args) != 1 {
				return fmt.Errorf("unexpected arguments %q: put the command after -- or use --cmd", args[1:])
			}
			if shell != "" {
				if len(startCmd) > 0 {
					return fmt.Errorf("give the command once: --cmd, --arg or after --")
				}
				startCmd = []string{"/bin/sh", "-c", shell}
			}
			if len(startCmd) == 0 {
				return fmt.Errorf("no command: give --cmd, --arg or an argv after --")
			}
			req := client.BuildRequest{StartCmd: startCmd, Workdir: workdir, Tags: tags}
			var err error
			if req.Env, err = parseKV("env", env); err != nil {
				return err
			}
			if req.Files, err = parseFiles(files); err != nil {
				return err
			}
			for _, p := range ports {
				req.Ports = append(req.Ports, standby.Port{Name: p})
			}
			if readiness != "" {
				if req.ReadinessHealthCheck, err = parseCheck("readiness", readiness); err != nil {
					return err
				}
			}
			if health != "" {
				if req.HealthCheck, err = parseCheck("health", health); err != nil {
					return err
				}
			}
			if res.changed(cmd.Flags()) {
				r := res.over(cmd.Flags(), standby.Resources{})
				req.Resources = &r
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			b, err := c.CreateBuild(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return a.showBuild(b)
		},
	}
	f := create.Flags()
	f.StringVar(&shell, "cmd", "", "shell command to run (/bin/sh -c)")
	f.StringArrayVar(&argv, "arg", nil, "one argv element (repeatable, in order)")
	f.StringArrayVar(&ports, "port", nil, "named port, e.g. http (repeatable; the first sets $PORT)")
	f.StringArrayVar(&env, "env", nil, "environment K=V (repeatable)")
	f.StringArrayVar(&files, "file", nil, "file in the instance root: path=@localfile or path=content (repeatable)")
	f.StringVar(&workdir, "workdir", "", "working directory, relative to the instance root")
	f.StringVar(&readiness, "readiness", "", "readiness check: port, process, http or http:/path")
	f.StringVar(&health, "health", "", "liveness check: port, process, http or http:/path")
	f.StringArrayVar(&tags, "tag", nil, "tag to move to this build (repeatable)")
	res.add(f)

	list := &cobra.Command{
		Use:   "list <template>",
		Short: "List a template's builds, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			bs, err := c.AllBuilds(cmd.Context(), args[0], client.ListOptions{})
			if err != nil {
				return err
			}
			return a.show(bs, func() error {
				rows := make([][]string, len(bs))
				for i, b := range bs {
					rows[i] = []string{b.ID, strconv.FormatInt(b.Number, 10), b.Status, strings.Join(b.Tags, ","), strings.Join(b.StartCmd, " "), fmtTime(b.CreatedAt)}
				}
				return a.table([]string{"ID", "NUMBER", "STATUS", "TAGS", "START_CMD", "CREATED"}, rows)
			})
		},
	}

	get := &cobra.Command{
		Use:   "get <template> <build-id>",
		Short: "Show a build",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			b, err := c.GetBuild(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return a.showBuild(b)
		},
	}
	cmd.AddCommand(create, list, get)
	return cmd
}

func fmtCheck(h *standby.HealthCheck) string {
	if h == nil {
		return ""
	}
	if h.Data.Endpoint != "" {
		return h.Type + ":" + h.Data.Endpoint
	}
	return h.Type
}

func (a *app) showBuild(b *standby.Build) error {
	return a.show(b, func() error {
		ports := make([]string, len(b.Ports))
		for i, p := range b.Ports {
			ports[i] = p.Name
		}
		return a.fields([][2]string{
			{"id", b.ID},
			{"template", b.Template},
			{"number", strconv.FormatInt(b.Number, 10)},
			{"status", b.Status},
			{"canonical_ref", b.CanonicalRef},
			{"start_cmd", strings.Join(b.StartCmd, " ")},
			{"ports", strings.Join(ports, ",")},
			{"readiness", fmtCheck(b.ReadinessHealthCheck)},
			{"health", fmtCheck(b.HealthCheck)},
			{"resources", fmtResources(b.Resources)},
			{"tags", strings.Join(b.Tags, ",")},
			{"runtime_artifact_id", b.RuntimeArtifactID},
			{"created", fmtTime(b.CreatedAt)},
		})
	})
}

func (a *app) tagCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "tag", Short: "Move template tags"}
	set := &cobra.Command{
		Use:   "set <template> <tag> <build-id>",
		Short: "Point a tag at a build (pools tracking the tag roll over)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			b, err := c.SetTag(cmd.Context(), args[0], args[1], args[2])
			if err != nil {
				return err
			}
			var v any = map[string]string{"template": args[0], "tag": args[1], "build_id": args[2]}
			if b != nil {
				v = b
			}
			return a.show(v, func() error {
				_, err := fmt.Fprintf(a.out(), "%s:%s -> %s\n", args[0], args[1], args[2])
				return err
			})
		},
	}
	cmd.AddCommand(set)
	return cmd
}
