// Package cli is standby's command line: cobra commands that call the HTTP
// API through package client and print tables (or JSON with --json).
//
// cmd/standby builds the root with NewRootCommand, adds the commands that
// run in-process (serve, echo-server, idle) and prints a returned error
// with PrintError.
package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/standbyhq/standby/client"
)

// Defaults of the global flags.
const (
	DefaultServer  = "http://127.0.0.1:7070"
	DefaultDataDir = "./standby-data"
	// AdminKeyFile is the file in the data dir where serve writes the
	// generated admin key; the CLI falls back to it.
	AdminKeyFile = "admin.key"
)

// Options configures the root command. Zero fields take the defaults noted.
type Options struct {
	// Stdout receives results, Stderr progress and notes (os.Stdout,
	// os.Stderr).
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the STANDBY_* environment (os.Getenv).
	Getenv func(string) string
	// HTTPClient sends the API requests (http.DefaultClient).
	HTTPClient *http.Client
	// PollInterval is how often `pool wait` looks at the pool (500ms).
	PollInterval time.Duration
	// Commands are added to the root as they are (serve, echo-server, …);
	// cmd/standby may as well call AddCommand on the result.
	Commands []*cobra.Command
}

// app holds the global flags and what every command needs.
type app struct {
	opts    Options
	root    *cobra.Command
	server  string
	apiKey  string
	dataDir string
	project string
	json    bool
}

// NewRootCommand returns the `standby` command with the API commands
// (template, build, tag, pool, sandbox, project, key, host) and the global
// flags --server (STANDBY_SERVER), --api-key (STANDBY_API_KEY, else
// <data-dir>/admin.key), --data-dir (STANDBY_DATA_DIR), --project
// (STANDBY_PROJECT) and --json. Errors are not printed by cobra (the caller
// uses PrintError) and usage is not shown on API errors.
func NewRootCommand(opts Options) *cobra.Command {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	a := &app{opts: opts}
	root := &cobra.Command{
		Use:   "standby",
		Short: "Warm pools of pre-started instances, handed out as sandboxes",
		Long: `standby keeps warm pools of pre-started, health-checked instances built from
versioned templates and hands one out as a sandbox in well under a millisecond.

The commands below talk to a standby server (see --server).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	a.root = root
	root.SetOut(opts.Stdout)
	root.SetErr(opts.Stderr)
	pf := root.PersistentFlags()
	// Defaults shown in --help already include the environment, except the
	// API key, which must never be printed.
	pf.StringVar(&a.server, "server", envOr(opts.Getenv, "STANDBY_SERVER", DefaultServer), "standby server URL (env STANDBY_SERVER)")
	pf.StringVar(&a.apiKey, "api-key", "", "API key (env STANDBY_API_KEY; default: the key in <data-dir>/admin.key)")
	pf.StringVar(&a.dataDir, "data-dir", envOr(opts.Getenv, "STANDBY_DATA_DIR", DefaultDataDir), "data directory (env STANDBY_DATA_DIR)")
	pf.StringVar(&a.project, "project", opts.Getenv("STANDBY_PROJECT"), "act in this project id (admin keys; env STANDBY_PROJECT)")
	pf.BoolVar(&a.json, "json", false, "print results as JSON")

	root.AddCommand(
		a.templateCommand(),
		a.buildCommand(),
		a.tagCommand(),
		a.poolCommand(),
		a.sandboxCommand(),
		a.projectCommand(),
		a.keyCommand(),
		a.hostCommand(),
	)
	root.AddCommand(opts.Commands...)
	return root
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// client returns an API client from the global flags. The key is looked up
// only now, so commands that need none (serve) never fail for its lack.
func (a *app) client() (*client.Client, error) {
	key, err := a.key()
	if err != nil {
		return nil, err
	}
	server := a.server
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	opts := []client.Option{client.WithHTTPClient(a.opts.HTTPClient)}
	if a.project != "" {
		opts = append(opts, client.WithProject(a.project))
	}
	return client.New(server, key, opts...), nil
}

func (a *app) key() (string, error) {
	if a.apiKey != "" {
		return a.apiKey, nil
	}
	if k := a.opts.Getenv("STANDBY_API_KEY"); k != "" {
		return k, nil
	}
	path := filepath.Join(a.dataDir, AdminKeyFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("no API key: pass --api-key, set STANDBY_API_KEY, or point --data-dir at the server's data directory (%s not found)", path)
		}
		return "", fmt.Errorf("read API key: %w", err)
	}
	k := strings.TrimSpace(string(b))
	if k == "" {
		return "", fmt.Errorf("read API key: %s is empty", path)
	}
	return k, nil
}

// PrintError prints err for a user: one `error: <detail> (field: x)` line
// per entry of an API error, else `error: <err>`.
func PrintError(w io.Writer, err error) {
	var ee *ExitError
	if err == nil || errors.As(err, &ee) {
		return
	}
	var ae *client.APIError
	if errors.As(err, &ae) && len(ae.Errors) > 0 {
		for _, e := range ae.Errors {
			fmt.Fprintf(w, "error: %s\n", e)
		}
		return
	}
	fmt.Fprintf(w, "error: %v\n", err)
}
