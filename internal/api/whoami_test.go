package api

import (
	"net/http"
	"testing"

	"github.com/standbyhq/standby"
)

func TestWhoami(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name          string
		key           string
		headers       []header
		status        int
		role, project string
	}{
		{name: "viewer", key: e.viewer, status: http.StatusOK, role: standby.RoleViewer, project: e.project},
		{name: "developer of another project", key: e.otherDev, status: http.StatusOK, role: standby.RoleDeveloper, project: e.other},
		{name: "admin acting in another project", key: e.admin, headers: []header{{headerProject, e.other}},
			status: http.StatusOK, role: standby.RoleAdmin, project: e.other},
		{name: "no key", key: "", status: http.StatusUnauthorized},
		{name: "unknown key", key: standby.NewKeySecret(), status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := must(t, doRequest(t, e.http.URL, "GET", "/v1/whoami", tt.key, nil, tt.headers...), tt.status)
			if tt.status != http.StatusOK {
				return
			}
			m := r.json(t)
			if m["role"] != tt.role || m["project_id"] != tt.project {
				t.Fatalf("whoami = %v, want role %s project %s", m, tt.role, tt.project)
			}
			if id, _ := m["key_id"].(string); len(id) <= len(standby.PrefixAPIKey) {
				t.Fatalf("key_id %q", m["key_id"])
			}
		})
	}
}
