package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/client"
)

// poolFlags are the settable fields of a warm pool, shared by create and
// update.
type poolFlags struct {
	name, template, checkoutPolicy, versionPolicy, trackTag string
	hostPool, cell, idleTimeout, staleAfter, metadata       string
	minReady, maxReady                                      int
	labels                                                  []string
	clearLabels                                             bool
	res                                                     resourceFlags
}

func (p *poolFlags) add(fs *pflag.FlagSet, update bool) {
	fs.StringVar(&p.name, "name", "", "pool name (1-160 characters)")
	fs.StringVar(&p.template, "template", "", "template ref: name, name:tag or name@tb_…")
	fs.IntVar(&p.minReady, "min-ready", 0, "ready instances kept at all times")
	fs.IntVar(&p.maxReady, "max-ready", 0, "most warming + ready instances (default min-ready)")
	fs.StringVar(&p.checkoutPolicy, "checkout-policy", "", "default sandbox mode: prefer, require or bypass")
	fs.StringVar(&p.versionPolicy, "version-policy", "", "pinned_build or track_tag")
	fs.StringVar(&p.trackTag, "track-tag", "", "tag to follow with version-policy track_tag")
	fs.StringVar(&p.hostPool, "host-pool", "", "host pool id to place instances on")
	fs.StringVar(&p.cell, "cell", "", "cell id to place instances in")
	fs.StringVar(&p.idleTimeout, "idle-timeout", "", "sandbox inactivity timeout: seconds or a duration (5m)")
	fs.StringVar(&p.staleAfter, "stale-after", "", "replace ready instances older than this: seconds or a duration (1h)")
	fs.StringVar(&p.metadata, "metadata", "", "pool metadata, a JSON object")
	if update {
		fs.StringArrayVar(&p.labels, "label", nil, "pool label key=value (repeatable; replaces all labels)")
		fs.BoolVar(&p.clearLabels, "clear-labels", false, "remove every label")
	} else {
		fs.StringArrayVar(&p.labels, "label", nil, "pool label key=value (repeatable)")
	}
	p.res.add(fs)
}

// patch returns the given flags as a merge patch of seed-000 fields. An
// empty --track-tag, --host-pool or --cell clears that field (null).
func (p *poolFlags) patch(fs *pflag.FlagSet) (map[string]any, error) {
	m := map[string]any{}
	setStr := func(flag, field, v string) {
		if fs.Changed(flag) {
			m[field] = v
		}
	}
	setNullable := func(flag, field, v string) {
		if fs.Changed(flag) {
			if v == "" {
				m[field] = nil
			} else {
				m[field] = v
			}
		}
	}
	setStr("name", "name", p.name)
	setStr("template", "template_ref", p.template)
	setStr("checkout-policy", "checkout_policy", p.checkoutPolicy)
	setStr("version-policy", "version_policy", p.versionPolicy)
	setNullable("track-tag", "track_tag", p.trackTag)
	setNullable("host-pool", "host_pool_id", p.hostPool)
	setNullable("cell", "cell_id", p.cell)
	if fs.Changed("min-ready") {
		m["min_ready"] = p.minReady
	}
	if fs.Changed("max-ready") {
		m["max_ready"] = p.maxReady
	}
	for _, f := range []struct{ flag, field, v string }{
		{"idle-timeout", "idle_timeout_seconds", p.idleTimeout},
		{"stale-after", "stale_after_seconds", p.staleAfter},
	} {
		if fs.Changed(f.flag) {
			n, err := parseSeconds(f.flag, f.v)
			if err != nil {
				return nil, err
			}
			m[f.field] = n
		}
	}
	if fs.Changed("metadata") {
		md, err := parseMetadata(p.metadata)
		if err != nil {
			return nil, err
		}
		m["metadata"] = md
	}
	if fs.Changed("label") || p.clearLabels {
		if p.clearLabels && fs.Changed("label") {
			return nil, fmt.Errorf("give --label or --clear-labels, not both")
		}
		lm, err := parseKV("label", p.labels)
		if err != nil {
			return nil, err
		}
		if lm == nil {
			lm = map[string]string{}
		}
		m["labels"] = lm
	}
	return m, nil
}

func (a *app) poolCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "pool", Short: "Manage template warm pools"}
	cmd.AddCommand(a.poolCreate(), a.poolList(), a.poolGet(), a.poolUpdate(), a.poolDelete(), a.poolStatus(),
		a.poolAction("enable", "Enable a pool", (*client.Client).EnableWarmPool),
		a.poolAction("disable", "Disable a pool: ready instances stop, checkouts are refused", (*client.Client).DisableWarmPool),
		a.poolAction("drain", "Drain a pool: no new warming, ready instances stop, claimed ones stay", (*client.Client).DrainWarmPool),
		a.poolAction("reconcile", "Ask the controller to look at a pool now", (*client.Client).ReconcileWarmPool),
		a.poolInstances(), a.poolWait())
	return cmd
}

func (a *app) poolCreate() *cobra.Command {
	var pf poolFlags
	cmd := &cobra.Command{
		Use:   "create --name NAME --template REF [--min-ready N] …",
		Short: "Create a warm pool",
		Example: `  standby pool create --name echo-pool --template echo --min-ready 3
  standby pool wait <pool-id>`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			req := client.CreateWarmPoolRequest{
				Name: pf.name, TemplateRef: pf.template,
				CheckoutPolicy: pf.checkoutPolicy, VersionPolicy: pf.versionPolicy,
			}
			if fs.Changed("min-ready") {
				req.MinReady = &pf.minReady
			}
			if fs.Changed("max-ready") {
				req.MaxReady = &pf.maxReady
			}
			if fs.Changed("track-tag") {
				req.TrackTag = &pf.trackTag
			}
			if fs.Changed("host-pool") {
				req.HostPoolID = &pf.hostPool
			}
			if fs.Changed("cell") {
				req.CellID = &pf.cell
			}
			if pf.res.changed(fs) {
				r := pf.res.over(fs, standby.Resources{})
				req.Resources = &r
			}
			for _, f := range []struct {
				flag, v string
				dst     **int
			}{{"idle-timeout", pf.idleTimeout, &req.IdleTimeoutSeconds}, {"stale-after", pf.staleAfter, &req.StaleAfterSeconds}} {
				if fs.Changed(f.flag) {
					n, err := parseSeconds(f.flag, f.v)
					if err != nil {
						return err
					}
					*f.dst = &n
				}
			}
			var err error
			if req.Labels, err = parseKV("label", pf.labels); err != nil {
				return err
			}
			if fs.Changed("metadata") {
				if req.Metadata, err = parseMetadata(pf.metadata); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.CreateWarmPool(cmd.Context(), req)
			if err != nil {
				return err
			}
			return a.showPool(p)
		},
	}
	pf.add(cmd.Flags(), false)
	return cmd
}

func (a *app) poolList() *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List warm pools",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseKV("label", labels)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ps, err := c.AllWarmPools(cmd.Context(), client.ListOptions{Labels: lm})
			if err != nil {
				return err
			}
			return a.show(ps, func() error {
				rows := make([][]string, len(ps))
				for i, p := range ps {
					s := p.Status
					rows[i] = []string{p.ID, p.Name, p.TemplateRef, p.State,
						fmt.Sprintf("%d/%d", s.Ready, p.MinReady), strconv.Itoa(s.Warming), strconv.Itoa(s.Claimed), strconv.Itoa(s.Failed),
						str(p.ResolvedTemplateBuildID), str(p.DegradedReason)}
				}
				return a.table([]string{"ID", "NAME", "TEMPLATE", "STATE", "READY", "WARMING", "CLAIMED", "FAILED", "BUILD", "DEGRADED"}, rows)
			})
		},
	}
	cmd.Flags().StringArrayVar(&labels, "label", nil, "only pools with label key=value (repeatable)")
	return cmd
}

func (a *app) poolGet() *cobra.Command {
	return &cobra.Command{
		Use:   "get <pool-id>",
		Short: "Show a warm pool",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetWarmPool(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.showPool(p)
		},
	}
}

func (a *app) poolUpdate() *cobra.Command {
	var pf poolFlags
	var ifMatch string
	cmd := &cobra.Command{
		Use:   "update <pool-id> [flags]",
		Short: "Change a pool: only the flags given are sent (a JSON merge patch)",
		Example: `  standby pool update twp_… --min-ready 5 --max-ready 10
  standby pool update twp_… --template echo:stable --version-policy track_tag`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			patch, err := pf.patch(fs)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if pf.res.changed(fs) {
				// resources is replaced whole by a patch: start from the
				// pool's current value so unnamed fields keep theirs, and
				// send its version so a concurrent change is not lost.
				cur, err := c.GetWarmPool(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				patch["resources"] = pf.res.over(fs, cur.Resources)
				if ifMatch == "" {
					ifMatch = strconv.FormatInt(cur.Version, 10)
				}
			}
			if len(patch) == 0 {
				return fmt.Errorf("nothing to update: give at least one flag (see --help)")
			}
			p, err := c.UpdateWarmPool(cmd.Context(), args[0], patch, ifMatch)
			if err != nil {
				return err
			}
			if p == nil {
				if p, err = c.GetWarmPool(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			return a.showPool(p)
		},
	}
	pf.add(cmd.Flags(), true)
	cmd.Flags().StringVar(&ifMatch, "if-match", "", "fail (412) unless the pool still has this version")
	return cmd
}

func (a *app) poolDelete() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete <pool-id>",
		Short: "Delete a pool; its unclaimed instances stop (--force: its sandboxes too)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.DeleteWarmPool(cmd.Context(), args[0], force); err != nil {
				return err
			}
			if !a.json {
				fmt.Fprintf(a.out(), "deleted pool %s\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "also stop the pool's running sandboxes")
	return cmd
}

func (a *app) poolStatus() *cobra.Command {
	return &cobra.Command{
		Use:   "status <pool-id>",
		Short: "Show a pool's instance counts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.WarmPoolStatus(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.show(s, func() error {
				return a.table([]string{"TARGET", "READY", "WARMING", "CLAIMED", "DRAINING", "FAILED", "EXPIRED", "UNAVAILABLE"},
					[][]string{{strconv.Itoa(s.Target), strconv.Itoa(s.Ready), strconv.Itoa(s.Warming), strconv.Itoa(s.Claimed),
						strconv.Itoa(s.Draining), strconv.Itoa(s.Failed), strconv.Itoa(s.Expired), strconv.Itoa(s.Unavailable)}})
			})
		},
	}
}

type poolActionFunc func(c *client.Client, ctx context.Context, id string, opts ...client.RequestOption) (*standby.WarmPool, error)

func (a *app) poolAction(name, short string, do poolActionFunc) *cobra.Command {
	var ifMatch string
	cmd := &cobra.Command{
		Use:   name + " <pool-id>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := do(c, cmd.Context(), args[0], client.WithIfMatch(ifMatch))
			if err != nil {
				return err
			}
			if p == nil {
				if p, err = c.GetWarmPool(cmd.Context(), args[0]); err != nil {
					return err
				}
			}
			return a.showPool(p)
		},
	}
	cmd.Flags().StringVar(&ifMatch, "if-match", "", "fail (412) unless the pool still has this version")
	return cmd
}

func (a *app) poolInstances() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:   "instances <pool-id>",
		Short: "List a pool's instances",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			is, err := c.AllInstances(cmd.Context(), args[0], client.ListOptions{State: state})
			if err != nil {
				return err
			}
			return a.show(is, func() error {
				rows := make([][]string, len(is))
				for i, in := range is {
					rows[i] = []string{in.ID, in.State, in.TemplateBuildID, in.Address, fmtPorts(in.Ports), str(in.SandboxID),
						fmtMap(in.Labels), fmtTimePtr(in.ReadyAt)}
				}
				return a.table([]string{"ID", "STATE", "BUILD", "ADDRESS", "PORTS", "SANDBOX", "LABELS", "READY_AT"}, rows)
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only instances in this state (warming, ready, claimed, draining, failed)")
	return cmd
}

func (a *app) poolWait() *cobra.Command {
	var timeout time.Duration
	var ready int
	cmd := &cobra.Command{
		Use:   "wait <pool-id>",
		Short: "Wait until a pool has enough ready instances, showing progress",
		Long: `Wait until the pool has at least --ready ready instances (default: its
min_ready), printing progress on stderr. Fails when --timeout passes first, or
when the pool is disabled, draining or deleted and so will not fill.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			want := -1
			if cmd.Flags().Changed("ready") {
				if ready < 0 {
					return fmt.Errorf("--ready must be >= 0")
				}
				want = ready
			}
			p, err := a.waitPool(cmd.Context(), c, args[0], timeout, want)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(p)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long (0: wait forever)")
	cmd.Flags().IntVar(&ready, "ready", 0, "ready instances to wait for (default the pool's min_ready)")
	return cmd
}

// waitPool polls the pool until want instances are ready (want < 0: the
// pool's min_ready). Progress goes to stderr, one line per change, or
// rewritten in place on a terminal.
func (a *app) waitPool(ctx context.Context, c *client.Client, id string, timeout time.Duration, want int) (*standby.WarmPool, error) {
	wctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tty := isTerminal(a.opts.Stderr)
	last, open := "", false
	show := func(line string) {
		switch {
		case tty:
			fmt.Fprintf(a.opts.Stderr, "\r\033[K%s", line)
			open = true
		case line != last:
			fmt.Fprintln(a.opts.Stderr, line)
		}
		last = line
	}
	// end finishes a progress line left open on a terminal.
	end := func() {
		if open {
			fmt.Fprintln(a.opts.Stderr)
			open = false
		}
	}
	defer end()
	timedOut := func() error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if last == "" {
			return fmt.Errorf("pool %s: no answer from the server within %s", id, timeout)
		}
		return fmt.Errorf("%s; still not ready after %s", last, timeout)
	}
	tick := time.NewTicker(a.opts.PollInterval)
	defer tick.Stop()
	for {
		p, err := c.GetWarmPool(wctx, id)
		if err != nil {
			if wctx.Err() != nil {
				return nil, timedOut()
			}
			return nil, err
		}
		n := want
		if n < 0 {
			n = p.MinReady
		}
		show(progressLine(p, n))
		if p.Status.Ready >= n {
			return p, nil
		}
		switch p.State {
		case standby.PoolDisabled, standby.PoolDraining:
			return nil, fmt.Errorf("pool %s is %s: it will not fill (enable it first)", id, p.State)
		case standby.PoolDeleted:
			return nil, fmt.Errorf("pool %s is deleted", id)
		}
		select {
		case <-wctx.Done():
			return nil, timedOut()
		case <-tick.C:
		}
	}
}

// progressLine is "pool twp_…: 2/3 ready, 1 warming", with failures,
// a degraded reason and a state other than enabled when there are any.
func progressLine(p *standby.WarmPool, want int) string {
	s := fmt.Sprintf("pool %s: %d/%d ready, %d warming", p.ID, p.Status.Ready, want, p.Status.Warming)
	if p.Status.Failed > 0 {
		s += fmt.Sprintf(", %d failed", p.Status.Failed)
	}
	if p.DegradedReason != nil && *p.DegradedReason != "" {
		s += " (degraded: " + *p.DegradedReason + ")"
	}
	if p.State != "" && p.State != standby.PoolEnabled {
		s += " (" + p.State + ")"
	}
	return s
}

func (a *app) showPool(p *standby.WarmPool) error {
	return a.show(p, func() error {
		s := p.Status
		kv := [][2]string{
			{"id", p.ID},
			{"name", p.Name},
			{"state", p.State},
			{"template_ref", p.TemplateRef},
			{"resolved_template", p.ResolvedTemplate},
			{"ready", fmt.Sprintf("%d (min %d, max %d, target %d)", s.Ready, p.MinReady, p.MaxReady, s.Target)},
			{"status", fmt.Sprintf("warming %d, claimed %d, draining %d, failed %d, expired %d, unavailable %d",
				s.Warming, s.Claimed, s.Draining, s.Failed, s.Expired, s.Unavailable)},
			{"checkout_policy", p.CheckoutPolicy},
			{"version_policy", p.VersionPolicy},
			{"track_tag", str(p.TrackTag)},
			{"resources", fmtResources(p.Resources)},
			{"idle_timeout_seconds", strconv.Itoa(p.IdleTimeoutSeconds)},
			{"stale_after_seconds", strconv.Itoa(p.StaleAfterSeconds)},
			{"labels", fmtMap(p.Labels)},
			{"rollout", fmt.Sprintf("generation %d, %s", p.RolloutGeneration, orDash(p.RolloutStatus.Phase))},
			{"previous_resolved_template", str(p.PreviousResolvedTemplate)},
			{"degraded_reason", str(p.DegradedReason)},
			{"version", strconv.FormatInt(p.Version, 10)},
			{"created", fmtTime(p.CreatedAt)},
			{"last_reconciled", fmtTimePtr(p.LastReconciledAt)},
		}
		if p.DeletedAt != nil {
			kv = append(kv, [2]string{"deleted", fmtTimePtr(p.DeletedAt)})
		}
		return a.fields(kv)
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
