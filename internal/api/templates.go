package api

import (
	"net/http"

	"github.com/standbyhq/standby"
)

// templateRequest is the body of POST /v1/templates.
type templateRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
}

// buildRequest is the body of POST /v1/templates/{name}/builds.
type buildRequest struct {
	StartCmd             []string             `json:"start_cmd"`
	Env                  map[string]string    `json:"env"`
	Workdir              string               `json:"workdir"`
	Files                map[string]string    `json:"files"`
	Ports                []standby.Port       `json:"ports"`
	HealthCheck          *standby.HealthCheck `json:"health_check"`
	ReadinessHealthCheck *standby.HealthCheck `json:"readiness_health_check"`
	Resources            standby.Resources    `json:"resources"`
	Tags                 []string             `json:"tags"`
}

// tagRequest is the body of PUT /v1/templates/{name}/tags/{tag}.
type tagRequest struct {
	BuildID string `json:"build_id"`
}

// maxDescriptionLen bounds a template description.
const maxDescriptionLen = 4096

func (s *Server) createTemplate(w http.ResponseWriter, r *http.Request, c *caller) error {
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	var req templateRequest
	if !get(o, "name", &req.Name) && !o.has("name") {
		o.add("name", "is required")
	}
	get(o, "description", &req.Description)
	get(o, "labels", &req.Labels)
	o.finish()
	var domain standby.Errors
	if err := standby.ValidateTemplateName(req.Name); err != nil {
		domain.Add("name", "%v", err)
	}
	if len(req.Description) > maxDescriptionLen {
		domain.Add("description", "must be at most %d bytes", maxDescriptionLen)
	}
	standby.ValidateLabels("labels", req.Labels, &domain)
	if err := combine(*o.errs, domain.Err()); err != nil {
		return err
	}
	now := s.clock.Now()
	t := &standby.Template{
		ID:          standby.NewID(standby.PrefixTemplate),
		ProjectID:   c.project,
		Name:        req.Name,
		Description: req.Description,
		Labels:      req.Labels,
		Tags:        map[string]string{},
		Version:     1,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	if err := s.store.CreateTemplate(r.Context(), t); err != nil {
		return err
	}
	writeVersioned(w, http.StatusCreated, t.Version, t)
	return nil
}

func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	f := standby.TemplateFilter{ProjectID: c.project, Page: q.page(), Labels: q.labels()}
	if err := q.err(); err != nil {
		return err
	}
	items, next, err := s.store.FindTemplates(r.Context(), f)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

func (s *Server) getTemplate(w http.ResponseWriter, r *http.Request, c *caller) error {
	t, err := s.store.FindTemplate(r.Context(), c.project, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeVersioned(w, http.StatusOK, t.Version, t)
	return nil
}

func (s *Server) deleteTemplate(w http.ResponseWriter, r *http.Request, c *caller) error {
	name := r.PathValue("name")
	t, err := s.store.FindTemplate(r.Context(), c.project, name)
	if err != nil {
		return err
	}
	// Templates change only by delete, so checking the version read just
	// before is as good as checking inside the delete.
	if err := checkIfMatch(r, t.Version); err != nil {
		return err
	}
	if err := s.store.DeleteTemplate(r.Context(), c.project, name); err != nil {
		return err
	}
	s.log.Info("template deleted", "project", c.project, "template", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	f := standby.BuildFilter{ProjectID: c.project, Template: r.PathValue("name"), Page: q.page()}
	if err := q.err(); err != nil {
		return err
	}
	items, next, err := s.store.FindBuilds(r.Context(), f)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

func (s *Server) getBuild(w http.ResponseWriter, r *http.Request, c *caller) error {
	b, err := s.store.FindBuild(r.Context(), c.project, r.PathValue("id"))
	if err != nil {
		return err
	}
	if b.Template != r.PathValue("name") {
		return standby.Errorf(standby.ENotFound, "build %s not found in template %q", b.ID, r.PathValue("name"))
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// decodeResources reads a resources object field by field so an unknown key
// is named (resources.foo).
func decodeResources(o *object, name string, dst *standby.Resources) bool {
	so := o.sub(name, false)
	if so == nil {
		return false
	}
	get(so, "vcpus", &dst.VCPUs)
	get(so, "memory_mb", &dst.MemoryMB)
	get(so, "disk_mb", &dst.DiskMB)
	so.finish()
	return true
}

func (s *Server) createBuild(w http.ResponseWriter, r *http.Request, c *caller) error {
	name := r.PathValue("name")
	if _, err := s.store.FindTemplate(r.Context(), c.project, name); err != nil {
		return err
	}
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	var req buildRequest
	get(o, "start_cmd", &req.StartCmd)
	get(o, "env", &req.Env)
	get(o, "workdir", &req.Workdir)
	get(o, "files", &req.Files)
	get(o, "ports", &req.Ports)
	getNullable(o, "health_check", &req.HealthCheck)
	getNullable(o, "readiness_health_check", &req.ReadinessHealthCheck)
	decodeResources(o, "resources", &req.Resources)
	get(o, "tags", &req.Tags)
	o.finish()
	b := &standby.Build{
		ID:                   standby.NewID(standby.PrefixBuild),
		ProjectID:            c.project,
		Template:             name,
		Status:               standby.BuildReady,
		StartCmd:             req.StartCmd,
		Env:                  req.Env,
		Workdir:              req.Workdir,
		Files:                req.Files,
		Ports:                req.Ports,
		HealthCheck:          req.HealthCheck,
		ReadinessHealthCheck: req.ReadinessHealthCheck,
		Resources:            req.Resources,
		Tags:                 req.Tags,
		CreatedAt:            s.clock.Now(),
	}
	if err := combine(*o.errs, b.Validate()); err != nil {
		return err
	}
	b.Normalize()
	b.Resources = b.Resources.WithDefaults()
	b.Seal()
	if err := s.store.CreateBuild(r.Context(), b); err != nil {
		return err
	}
	s.log.Info("build created", "project", c.project, "template", name, "build", b.ID)
	// "latest" (and maybe other tags) moved: pools tracking them roll.
	s.ctrl.WakeAll()
	writeJSON(w, http.StatusCreated, b)
	return nil
}

func (s *Server) setTag(w http.ResponseWriter, r *http.Request, c *caller) error {
	name, tag := r.PathValue("name"), r.PathValue("tag")
	if _, err := s.store.FindTemplate(r.Context(), c.project, name); err != nil {
		return err
	}
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	var req tagRequest
	if !get(o, "build_id", &req.BuildID) && !o.has("build_id") {
		o.add("build_id", "is required")
	}
	o.finish()
	var domain standby.Errors
	if err := standby.ValidateLabelKey(tag); err != nil {
		domain.Add("tag", "%v", err)
	}
	if err := combine(*o.errs, domain.Err()); err != nil {
		return err
	}
	b, err := s.store.FindBuild(r.Context(), c.project, req.BuildID)
	if err != nil {
		if standby.IsCode(err, standby.ENotFound) {
			return standby.FieldError("build_id", "build %s not found", req.BuildID)
		}
		return err
	}
	if b.Template != name {
		return standby.FieldError("build_id", "build %s belongs to template %q, not %q", b.ID, b.Template, name)
	}
	if err := s.store.SetTag(r.Context(), c.project, name, tag, b.ID); err != nil {
		return err
	}
	if b, err = s.store.FindBuild(r.Context(), c.project, b.ID); err != nil {
		return err
	}
	s.log.Info("tag moved", "project", c.project, "template", name, "tag", tag, "build", b.ID)
	s.ctrl.WakeAll()
	writeJSON(w, http.StatusOK, b)
	return nil
}
