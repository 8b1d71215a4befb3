package api

import (
	"net/http"

	"github.com/standbyhq/standby"
)

// projectRequest is the body of POST and PATCH /v1/projects.
type projectRequest struct {
	Name   string          `json:"name"`
	Quotas *standby.Quotas `json:"quotas"`
}

// apiKeyRequest is the body of POST /v1/projects/{id}/api-keys.
type apiKeyRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// maxNameLen bounds free-form names (projects, keys).
const maxNameLen = 160

// decodeQuotas reads the quotas object; each limit is a nullable integer ≥ 0.
func decodeQuotas(o *object, q *standby.Quotas) {
	so := o.sub("quotas", true)
	if so == nil {
		return
	}
	*q = standby.Quotas{}
	for _, f := range []struct {
		name string
		dst  **int
	}{{"max_sandboxes", &q.MaxSandboxes}, {"max_vcpus", &q.MaxVCPUs}, {"max_memory_mb", &q.MaxMemoryMB}} {
		if getNullable(so, f.name, f.dst) && *f.dst != nil && **f.dst < 0 {
			so.add(f.name, "must be >= 0 or null")
		}
	}
	so.finish()
}

func validateProjectName(name string, errs *standby.Errors) {
	if err := standby.ValidateLabelKey(name); err != nil {
		errs.Add("name", "%v", err)
	}
}

func (s *Server) createProject(w http.ResponseWriter, r *http.Request, c *caller) error {
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	p := &standby.Project{}
	if !get(o, "name", &p.Name) && !o.has("name") {
		o.add("name", "is required")
	}
	decodeQuotas(o, &p.Quotas)
	o.finish()
	var domain standby.Errors
	validateProjectName(p.Name, &domain)
	if err := combine(*o.errs, domain.Err()); err != nil {
		return err
	}
	if err := standby.CreateProjectWithBuiltins(r.Context(), s.store, p, s.clock.Now()); err != nil {
		return err
	}
	s.log.Info("project created", "project", p.ID, "name", p.Name)
	writeVersioned(w, http.StatusCreated, p.Version, p)
	return nil
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	page := q.page()
	if err := q.err(); err != nil {
		return err
	}
	if !c.admin() {
		// Other roles see only their own project.
		p, err := s.store.FindProject(r.Context(), c.key.ProjectID)
		if err != nil {
			return err
		}
		writeList(w, []*standby.Project{p}, "")
		return nil
	}
	items, next, err := s.store.FindProjects(r.Context(), standby.ProjectFilter{Page: page})
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// findProject returns a project the caller may see: admins see every
// project, others only their own (anything else is 404).
func (s *Server) findProject(r *http.Request, c *caller) (*standby.Project, error) {
	id := r.PathValue("id")
	if !c.admin() && id != c.key.ProjectID {
		return nil, standby.Errorf(standby.ENotFound, "project %s not found", id)
	}
	return s.store.FindProject(r.Context(), id)
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.findProject(r, c)
	if err != nil {
		return err
	}
	writeVersioned(w, http.StatusOK, p.Version, p)
	return nil
}

func (s *Server) patchProject(w http.ResponseWriter, r *http.Request, c *caller) error {
	if _, err := s.findProject(r, c); err != nil {
		return err
	}
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	var name string
	hasName := get(o, "name", &name)
	var quotas standby.Quotas
	hasQuotas := o.has("quotas")
	decodeQuotas(o, &quotas)
	o.finish()
	var domain standby.Errors
	if hasName {
		validateProjectName(name, &domain)
	}
	if err := combine(*o.errs, domain.Err()); err != nil {
		return err
	}
	now := s.clock.Now()
	p, err := s.store.UpdateProject(r.Context(), r.PathValue("id"), func(p *standby.Project) error {
		if err := checkIfMatch(r, p.Version); err != nil {
			return err
		}
		if hasName {
			p.Name = name
		}
		if hasQuotas {
			p.Quotas = quotas
		}
		p.UpdatedAt = now
		return nil
	})
	if err != nil {
		return err
	}
	writeUpdated(w, r, p.Version, p)
	return nil
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.findProject(r, c)
	if err != nil {
		return err
	}
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	var req apiKeyRequest
	get(o, "name", &req.Name)
	if !get(o, "role", &req.Role) && !o.has("role") {
		o.add("role", "is required")
	}
	o.finish()
	var domain standby.Errors
	if len(req.Name) > maxNameLen {
		domain.Add("name", "must be at most %d characters", maxNameLen)
	}
	if req.Role != "" && !standby.ValidRole(req.Role) {
		domain.Add("role", "must be one of admin, developer, viewer")
	}
	if err := combine(*o.errs, domain.Err()); err != nil {
		return err
	}
	secret := standby.NewKeySecret()
	k := &standby.APIKey{
		ID:        standby.NewID(standby.PrefixAPIKey),
		ProjectID: p.ID,
		Name:      req.Name,
		Role:      req.Role,
		Hash:      standby.HashKey(secret),
		Prefix:    secret[:len(standby.KeySecretPrefix)+6],
		CreatedAt: s.clock.Now(),
	}
	if err := s.store.CreateAPIKey(r.Context(), k); err != nil {
		return err
	}
	s.log.Info("api key created", "project", p.ID, "key", k.ID, "role", k.Role)
	k.Secret = secret
	writeJSON(w, http.StatusCreated, k)
	return nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	page := q.page()
	revoked := q.boolean("include_revoked")
	if err := q.err(); err != nil {
		return err
	}
	p, err := s.findProject(r, c)
	if err != nil {
		return err
	}
	items, next, err := s.store.FindAPIKeys(r.Context(), standby.APIKeyFilter{ProjectID: p.ID, IncludeRevoked: revoked, Page: page})
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if err := s.store.RevokeAPIKey(r.Context(), id, s.clock.Now()); err != nil {
		return err
	}
	s.log.Info("api key revoked", "key", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
