package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/internal/agent"
	"github.com/standbyhq/standby/internal/api"
	"github.com/standbyhq/standby/internal/cli"
	"github.com/standbyhq/standby/internal/controller"
	"github.com/standbyhq/standby/internal/echo"
	"github.com/standbyhq/standby/internal/store/sqlite"
)

// serveConfig is everything `standby serve` is configured with.
type serveConfig struct {
	Listen     string // address of the HTTP API; ":0" picks a free port
	DataDir    string // store, admin key, instance directories
	Store      string // "" or "sqlite:<path>": SQLite in the data dir by default
	Sync       string // SQLite synchronous setting: FULL (default) or NORMAL
	LocalAgent bool   // run an agent in this process
	AdminKey   string // from STANDBY_ADMIN_KEY; generated when empty
	LogLevel   string
	Isolation  string // agent.Config.Isolation: auto, on or none
	// Ready, if set, receives the address the server listens on once it
	// accepts connections (tests and `standby bench` use it).
	Ready func(addr string)
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := cli.NewRootCommand(cli.Options{Stdout: stdout, Stderr: stderr})
	root.AddCommand(newServeCommand(stderr), newEchoServerCommand(), newIdleCommand(), newBenchCommand(stdout, stderr), newSandboxInitCommand())
	return root
}

func newServeCommand(stderr io.Writer) *cobra.Command {
	var cfg serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane, API and dashboard (with a local agent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.AdminKey = os.Getenv("STANDBY_ADMIN_KEY")
			// --data-dir is the CLI's persistent flag, so serve and the
			// other commands agree on where admin.key lives.
			dataDir, err := cmd.Flags().GetString("data-dir")
			if err != nil {
				return err
			}
			cfg.DataDir = dataDir
			return serve(cmd.Context(), cfg, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", envOr("STANDBY_LISTEN", "127.0.0.1:7070"), "address to serve the API on (env STANDBY_LISTEN)")
	f.StringVar(&cfg.Store, "store", envOr("STANDBY_STORE", ""), "store URL: sqlite:<path> (default: SQLite in the data dir) (env STANDBY_STORE)")
	f.StringVar(&cfg.Sync, "sqlite-synchronous", envOr("STANDBY_SQLITE_SYNCHRONOUS", "FULL"), "SQLite synchronous setting: FULL (nothing acknowledged is lost, even on power loss) or NORMAL")
	f.BoolVar(&cfg.LocalAgent, "local-agent", envOr("STANDBY_LOCAL_AGENT", "true") == "true", "run an agent in this process (env STANDBY_LOCAL_AGENT)")
	f.StringVar(&cfg.Isolation, "isolation", envOr("STANDBY_ISOLATION", "auto"), "instance isolation: auto (namespaces and cgroups when root on Linux), on, or none (env STANDBY_ISOLATION)")
	f.StringVar(&cfg.LogLevel, "log-level", envOr("STANDBY_LOG_LEVEL", "info"), "debug, info, warn or error (env STANDBY_LOG_LEVEL)")
	return cmd
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// serve runs the server until ctx ends.
func serve(ctx context.Context, cfg serveConfig, stderr io.Writer) error {
	logger, err := newLogger(stderr, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	clock := standby.SystemClock{}

	storePath := filepath.Join(cfg.DataDir, "standby.db")
	if cfg.Store != "" {
		p, ok := strings.CutPrefix(cfg.Store, "sqlite:")
		if !ok {
			return fmt.Errorf("--store %q: only sqlite:<path> is supported", cfg.Store)
		}
		storePath = p
	}
	store, err := sqlite.Open(ctx, sqlite.Config{Path: storePath, Synchronous: cfg.Sync, Logger: logger})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()

	if err := bootstrap(ctx, store, cfg, clock.Now(), stderr); err != nil {
		return err
	}

	var agents []standby.Agent
	var localAgent *agent.Local
	if cfg.LocalAgent {
		hostID, err := stableID(filepath.Join(cfg.DataDir, "host.id"), standby.PrefixHost)
		if err != nil {
			return err
		}
		name, _ := os.Hostname()
		localAgent, err = agent.New(agent.Config{
			DataDir:   cfg.DataDir,
			HostID:    hostID,
			Name:      name,
			Clock:     clock,
			Logger:    logger.With("component", "agent"),
			Isolation: cfg.Isolation,
		})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if iso := localAgent.Host().Isolation; iso == standby.IsolationNone {
			logger.Warn("isolation: none; instances run as plain processes of this user, without namespaces or limits")
		} else {
			logger.Info("isolation: "+iso+"; instances run in their own namespaces as their own uid, with cgroup limits", "isolation", iso)
		}
		agents = append(agents, localAgent)
	}

	ctrl, err := controller.New(controller.Config{
		Store:  store,
		Agents: agents,
		Clock:  clock,
		Logger: logger.With("component", "controller"),
	})
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := api.New(api.Config{
		Store:      store,
		Controller: ctrl,
		Clock:      clock,
		Logger:     logger.With("component", "api"),
		Registry:   reg,
	})
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	if localAgent != nil {
		run("agent", localAgent.Run)
	}
	run("controller", ctrl.Run)
	run("api", srv.Run)
	run("http", func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			shutdownCtx, c := context.WithTimeout(context.Background(), 5*time.Second)
			defer c()
			httpSrv.Shutdown(shutdownCtx)
		}()
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	addr := ln.Addr().String()
	logger.Info("standby serving", "addr", "http://"+addr, "data_dir", cfg.DataDir, "store", storePath, "local_agent", cfg.LocalAgent)
	if cfg.Ready != nil {
		cfg.Ready(addr)
	}
	<-ctx.Done()
	wg.Wait()
	logger.Info("standby stopped")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// stableID returns the id stored in path, creating it on first use, so the
// local host keeps its id across restarts (its instances are re-adopted).
func stableID(path, prefix string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if id := strings.TrimSpace(string(b)); strings.HasPrefix(id, prefix) {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	id := standby.NewID(prefix)
	if err := writeFileSync(path, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}

// writeFileSync writes a file durably: temp file, fsync, rename, fsync dir.
func writeFileSync(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func newEchoServerCommand() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:    "echo-server",
		Short:  "Serve the built-in echo template's HTTP server on $PORT",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr == "" {
				port := os.Getenv("PORT")
				if port == "" {
					return errors.New("echo-server: PORT is not set (use --addr)")
				}
				addr = "127.0.0.1:" + port
			}
			return echo.Serve(cmd.Context(), addr)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "address to listen on (default 127.0.0.1:$PORT)")
	return cmd
}

func newIdleCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "idle",
		Short:  "Wait until stopped (the built-in base template's process)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return echo.Idle(cmd.Context())
		},
	}
}
