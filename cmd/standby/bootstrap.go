package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/standbyhq/standby"
	"github.com/standbyhq/standby/internal/cli"
)

// bootstrap makes sure the default project (with its built-in templates)
// and the admin key exist. The key is STANDBY_ADMIN_KEY when set; otherwise
// one is generated on first start, written to <data-dir>/admin.key (0600)
// and printed once.
func bootstrap(ctx context.Context, s standby.Store, cfg serveConfig, now time.Time, out io.Writer) error {
	p, err := s.FindProjectByName(ctx, standby.DefaultProjectName)
	if standby.IsCode(err, standby.ENotFound) {
		p = &standby.Project{Name: standby.DefaultProjectName}
		err = standby.CreateProjectWithBuiltins(ctx, s, p, now)
	}
	if err != nil {
		return fmt.Errorf("bootstrap default project: %w", err)
	}
	if err := standby.EnsureBuiltins(ctx, s, p.ID, now); err != nil {
		return fmt.Errorf("bootstrap built-in templates: %w", err)
	}

	secret := cfg.AdminKey
	keyFile := filepath.Join(cfg.DataDir, cli.AdminKeyFile)
	generated := false
	if secret == "" {
		b, err := os.ReadFile(keyFile)
		switch {
		case err == nil:
			secret = strings.TrimSpace(string(b))
		case errors.Is(err, os.ErrNotExist):
			secret, generated = standby.NewKeySecret(), true
		default:
			return fmt.Errorf("read admin key: %w", err)
		}
	}
	if _, err := s.FindAPIKeyByHash(ctx, standby.HashKey(secret)); err == nil {
		return nil
	} else if !standby.IsCode(err, standby.ENotFound) {
		return fmt.Errorf("bootstrap admin key: %w", err)
	}
	k := &standby.APIKey{
		ID:        standby.NewID(standby.PrefixAPIKey),
		ProjectID: p.ID,
		Name:      "admin",
		Role:      standby.RoleAdmin,
		Hash:      standby.HashKey(secret),
		Prefix:    secret[:min(len(secret), 8)],
		CreatedAt: now,
	}
	// The key file is written before the key is stored, so a crash in
	// between leaves a file whose key the next start stores.
	if generated {
		if err := writeFileSync(keyFile, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write admin key: %w", err)
		}
	}
	if err := s.CreateAPIKey(ctx, k); err != nil {
		return fmt.Errorf("store admin key: %w", err)
	}
	if generated {
		fmt.Fprintf(out, "\nstandby: created admin API key (shown once, also saved to %s):\n\n    %s\n\n", keyFile, secret)
	}
	return nil
}
