package api

import (
	"net/http"
	"strings"

	"github.com/standbyhq/standby"
)

// headerProject lets an admin key act in another project.
const headerProject = "Standby-Project"

// caller is the authenticated key and the project it acts in.
type caller struct {
	key     *standby.APIKey
	project string
}

func (c *caller) admin() bool { return c.key.Role == standby.RoleAdmin }

// owns reports whether a resource of projectID is visible to the caller: it
// must be in the project the caller acts in. Anything else is a 404, never
// a 403, so ids of other projects leak nothing.
func (c *caller) owns(projectID string) bool { return projectID == c.project }

// authenticate checks the bearer key and the route's role.
func (s *Server) authenticate(r *http.Request, need access) (*caller, error) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return nil, standby.Errorf(standby.EUnauthorized, "missing bearer API key")
	}
	key, err := s.cache.apiKey(r.Context(), s.store, standby.HashKey(strings.TrimSpace(secret)))
	if err != nil {
		if standby.IsCode(err, standby.ENotFound) {
			return nil, standby.Errorf(standby.EUnauthorized, "unknown or revoked API key")
		}
		return nil, err
	}
	if key.RevokedAt != nil {
		return nil, standby.Errorf(standby.EUnauthorized, "unknown or revoked API key")
	}
	c := &caller{key: key, project: key.ProjectID}
	switch need {
	case writeRole:
		if key.Role == standby.RoleViewer {
			return nil, standby.Errorf(standby.EForbidden, "a viewer key may only read")
		}
	case adminRole:
		if key.Role != standby.RoleAdmin {
			return nil, standby.Errorf(standby.EForbidden, "this needs an admin key")
		}
	}
	if p := r.Header.Get(headerProject); p != "" && p != key.ProjectID {
		if key.Role != standby.RoleAdmin {
			return nil, standby.Errorf(standby.EForbidden, "only an admin key may act in another project")
		}
		if _, err := s.store.FindProject(r.Context(), p); err != nil {
			if standby.IsCode(err, standby.ENotFound) {
				return nil, standby.Errorf(standby.ENotFound, "project %s not found", p)
			}
			return nil, err
		}
		c.project = p
	}
	return c, nil
}
