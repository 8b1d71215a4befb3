package standby

import (
	"context"
	"time"
)

// SelfCommand as argv[0] of a start_cmd means the agent's own standby
// binary, so built-in templates need nothing else installed.
const SelfCommand = "standby"

// BuiltinTemplates returns the templates every project starts with, each
// with the build it gets: base (a long-running idle process) and echo (a
// small HTTP server on $PORT, ready on /healthz).
func BuiltinTemplates() []struct {
	Template Template
	Build    Build
} {
	return []struct {
		Template Template
		Build    Build
	}{
		{
			Template{Name: "base", Description: "A long-running idle process.", Builtin: true},
			Build{StartCmd: []string{SelfCommand, "idle"}},
		},
		{
			Template{Name: "echo", Description: "A small HTTP server on $PORT that echoes requests; ready on /healthz.", Builtin: true},
			Build{
				StartCmd:             []string{SelfCommand, "echo-server"},
				Ports:                []Port{{Name: "http"}},
				ReadinessHealthCheck: &HealthCheck{Type: CheckHTTP, Data: HealthCheckData{Endpoint: "/healthz"}},
				HealthCheck:          &HealthCheck{Type: CheckPort},
			},
		},
	}
}

// CreateProjectWithBuiltins stores a new project and its built-in templates
// with their first builds.
func CreateProjectWithBuiltins(ctx context.Context, s Store, p *Project, now time.Time) error {
	if p.ID == "" {
		p.ID = NewID(PrefixProject)
	}
	p.Version, p.CreatedAt, p.UpdatedAt = 1, now, now
	if err := s.CreateProject(ctx, p); err != nil {
		return err
	}
	return EnsureBuiltins(ctx, s, p.ID, now)
}

// EnsureBuiltins creates any built-in template the project lacks.
func EnsureBuiltins(ctx context.Context, s Store, projectID string, now time.Time) error {
	for _, bt := range BuiltinTemplates() {
		if _, err := s.FindTemplate(ctx, projectID, bt.Template.Name); err == nil {
			continue
		} else if !IsCode(err, ENotFound) {
			return err
		}
		t := bt.Template
		t.ID, t.ProjectID, t.Version, t.CreatedAt, t.UpdatedAt = NewID(PrefixTemplate), projectID, 1, now, now
		t.Labels = map[string]string{}
		if err := s.CreateTemplate(ctx, &t); err != nil && !IsCode(err, EConflict) {
			return err
		}
		b := bt.Build
		b.ID, b.ProjectID, b.Template, b.Status, b.CreatedAt = NewID(PrefixBuild), projectID, t.Name, BuildReady, now
		b.Resources = b.Resources.WithDefaults()
		b.Seal()
		if err := s.CreateBuild(ctx, &b); err != nil {
			return err
		}
	}
	return nil
}
