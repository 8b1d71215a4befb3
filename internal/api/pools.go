package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/standbyhq/standby"
)

// poolRequest is the body of POST and PATCH /v1/template-warm-pools (seed
// 000's request fields exactly).
type poolRequest struct {
	Name               string            `json:"name"`
	TemplateRef        string            `json:"template_ref"`
	Template           string            `json:"template"` // deprecated alias of template_ref
	MinReady           int               `json:"min_ready"`
	MaxReady           int               `json:"max_ready"`
	Resources          standby.Resources `json:"resources"`
	CheckoutPolicy     string            `json:"checkout_policy"`
	IdleTimeoutSeconds int               `json:"idle_timeout_seconds"`
	StaleAfterSeconds  int               `json:"stale_after_seconds"`
	VersionPolicy      string            `json:"version_policy"`
	TrackTag           *string           `json:"track_tag"`
	HostPoolID         *string           `json:"host_pool_id"`
	CellID             *string           `json:"cell_id"`
	Labels             map[string]string `json:"labels"`
	Metadata           map[string]any    `json:"metadata"`
}

// poolStatus is the body of GET …/{id}/status.
type poolStatus struct {
	Status           standby.WarmPoolStatus `json:"status"`
	RolloutStatus    standby.RolloutStatus  `json:"rollout_status"`
	DegradedReason   *string                `json:"degraded_reason"`
	LastReconciledAt *time.Time             `json:"last_reconciled_at"`
	State            string                 `json:"state"`
	Version          int64                  `json:"version"`
}

// poolPatch is a decoded pool body: which fields were given and their
// values (in a WarmPool).
type poolPatch struct {
	set map[string]bool
	v   standby.WarmPool
}

// decodePool reads the seed-000 request fields, recording errors in o.
func decodePool(o *object) poolPatch {
	p := poolPatch{set: map[string]bool{}}
	mark := func(name string, ok bool) {
		if ok {
			p.set[name] = true
		}
	}
	mark("name", get(o, "name", &p.v.Name))
	var ref, alias string
	hasRef := get(o, "template_ref", &ref)
	hasAlias := get(o, "template", &alias)
	switch {
	case hasRef && hasAlias && ref != alias:
		o.add("template", "is a deprecated alias of template_ref and differs from it; send only template_ref")
	case hasRef:
		p.v.TemplateRef, p.set["template_ref"] = ref, true
	case hasAlias:
		p.v.TemplateRef, p.set["template_ref"] = alias, true
	}
	mark("min_ready", get(o, "min_ready", &p.v.MinReady))
	mark("max_ready", get(o, "max_ready", &p.v.MaxReady))
	mark("resources", decodeResources(o, "resources", &p.v.Resources))
	mark("checkout_policy", get(o, "checkout_policy", &p.v.CheckoutPolicy))
	mark("idle_timeout_seconds", get(o, "idle_timeout_seconds", &p.v.IdleTimeoutSeconds))
	mark("stale_after_seconds", get(o, "stale_after_seconds", &p.v.StaleAfterSeconds))
	mark("version_policy", get(o, "version_policy", &p.v.VersionPolicy))
	mark("track_tag", getNullable(o, "track_tag", &p.v.TrackTag))
	mark("host_pool_id", getNullable(o, "host_pool_id", &p.v.HostPoolID))
	mark("cell_id", getNullable(o, "cell_id", &p.v.CellID))
	mark("labels", get(o, "labels", &p.v.Labels))
	md, ok := o.rawObject("metadata")
	p.v.Metadata = md
	mark("metadata", ok)
	o.finish()
	return p
}

// apply writes the given fields onto dst: a given field replaces the old
// value whole (merge patch on top-level fields).
func (pp poolPatch) apply(dst *standby.WarmPool) {
	v := pp.v
	for f := range pp.set {
		switch f {
		case "name":
			dst.Name = v.Name
		case "template_ref":
			dst.TemplateRef = v.TemplateRef
		case "min_ready":
			dst.MinReady = v.MinReady
		case "max_ready":
			dst.MaxReady = v.MaxReady
		case "resources":
			dst.Resources = v.Resources
		case "checkout_policy":
			dst.CheckoutPolicy = v.CheckoutPolicy
		case "idle_timeout_seconds":
			dst.IdleTimeoutSeconds = v.IdleTimeoutSeconds
		case "stale_after_seconds":
			dst.StaleAfterSeconds = v.StaleAfterSeconds
		case "version_policy":
			dst.VersionPolicy = v.VersionPolicy
		case "track_tag":
			dst.TrackTag = v.TrackTag
		case "host_pool_id":
			dst.HostPoolID = v.HostPoolID
		case "cell_id":
			dst.CellID = v.CellID
		case "labels":
			dst.Labels = v.Labels
			if dst.Labels == nil {
				dst.Labels = map[string]string{}
			}
		case "metadata":
			dst.Metadata = v.Metadata
		}
	}
}

// copyPoolSpec copies the user-set and resolution fields of src onto dst,
// leaving what the controller writes (status, rollout_status, degraded
// reason, last_reconciled_at) and the state fields alone.
func copyPoolSpec(dst, src *standby.WarmPool) {
	dst.Name = src.Name
	dst.TemplateRef = src.TemplateRef
	dst.ResolvedTemplate = src.ResolvedTemplate
	dst.Resources = src.Resources
	dst.MinReady = src.MinReady
	dst.MaxReady = src.MaxReady
	dst.IdleTimeoutSeconds = src.IdleTimeoutSeconds
	dst.StaleAfterSeconds = src.StaleAfterSeconds
	dst.CheckoutPolicy = src.CheckoutPolicy
	dst.VersionPolicy = src.VersionPolicy
	dst.RolloutGeneration = src.RolloutGeneration
	dst.Labels = src.Labels
	dst.Metadata = src.Metadata
	dst.ResolvedTemplateBuildID = src.ResolvedTemplateBuildID
	dst.RuntimeArtifactID = src.RuntimeArtifactID
	dst.HostPoolID = src.HostPoolID
	dst.CellID = src.CellID
	dst.CompatibilityKey = src.CompatibilityKey
	dst.TrackTag = src.TrackTag
	dst.PreviousResolvedTemplate = src.PreviousResolvedTemplate
	dst.PreviousResolvedTemplateBuildID = src.PreviousResolvedTemplateBuildID
	dst.PreviousRuntimeArtifactID = src.PreviousRuntimeArtifactID
	dst.UpdatedAt = src.UpdatedAt
}

// resolveRef is the ref a pool resolves: under track_tag the tracked tag of
// the template, else template_ref as written.
func resolveRef(p *standby.WarmPool) string {
	if p.VersionPolicy == standby.PolicyTrackTag {
		if r, err := standby.ParseTemplateRef(p.TemplateRef); err == nil {
			return r.Name + ":" + p.EffectiveTrackTag()
		}
	}
	return p.TemplateRef
}

// resolvePool finds the build a pool points at, turning "not found" into a
// 422 on the field that named the missing thing.
func (s *Server) resolvePool(ctx context.Context, projectID string, p *standby.WarmPool) (*standby.Build, error) {
	b, err := standby.ResolveTemplateRef(ctx, s.store, projectID, resolveRef(p))
	if err == nil {
		return b, nil
	}
	if !standby.IsCode(err, standby.ENotFound) {
		return nil, err
	}
	field := "template_ref"
	if r, perr := standby.ParseTemplateRef(p.TemplateRef); perr == nil && p.TrackTag != nil && *p.TrackTag != "" && p.VersionPolicy == standby.PolicyTrackTag {
		if _, terr := s.store.FindTemplate(ctx, projectID, r.Name); terr == nil {
			field = "track_tag"
		}
	}
	msg := "no such template, tag or build"
	if list := standby.ErrorList(err); len(list) > 0 {
		msg = list[0].Message
	}
	return nil, standby.FieldError(field, "%s", msg)
}

func (s *Server) createPool(w http.ResponseWriter, r *http.Request, c *caller) error {
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	pp := decodePool(o)
	now := s.clock.Now()
	p := &standby.WarmPool{}
	// Defaults first, then the request on top, so an explicit 0 or "" is
	// validated instead of silently defaulted.
	p.ApplyDefaults()
	pp.apply(p)
	if pp.set["min_ready"] && !pp.set["max_ready"] {
		p.MaxReady = p.MinReady
	}
	if err := combine(*o.errs, p.Validate()); err != nil {
		return err
	}
	b, err := s.resolvePool(r.Context(), c.project, p)
	if err != nil {
		return err
	}
	p.ID = standby.NewID(standby.PrefixWarmPool)
	p.ProjectID = c.project
	p.SetResolvedBuild(b)
	p.Resources = p.Resources.FillFrom(b.Resources)
	p.State = standby.PoolEnabled
	p.EnabledAt = &now
	p.CreatedAt, p.UpdatedAt = now, now
	p.Version = 1
	p.Status = standby.WarmPoolStatus{Target: p.MinReady}
	p.RolloutStatus = standby.RolloutStatus{Phase: standby.RolloutComplete, TargetBuildID: b.ID, CurrentCounts: map[string]int{}}
	if p.MinReady > 0 {
		p.RolloutStatus.Phase = standby.RolloutProgressing
	}
	if err := s.store.CreateWarmPool(r.Context(), p); err != nil {
		return err
	}
	s.log.Info("warm pool created", "project", c.project, "pool", p.ID, "build", b.ID)
	s.ctrl.WakePool(p.ID)
	writeVersioned(w, http.StatusCreated, p.Version, p)
	return nil
}

func (s *Server) listPools(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	f := standby.WarmPoolFilter{
		ProjectID: c.project,
		Page:      q.page(),
		Labels:    q.labels(),
		States:    q.states(standby.PoolEnabled, standby.PoolDisabled, standby.PoolDraining, standby.PoolDeleted),
	}
	for _, st := range f.States {
		if st == standby.PoolDeleted {
			f.IncludeDeleted = true
		}
	}
	if err := q.err(); err != nil {
		return err
	}
	items, next, err := s.store.FindWarmPools(r.Context(), f)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// findPool returns a pool of the caller's project (404 otherwise).
func (s *Server) findPool(ctx context.Context, c *caller, id string) (*standby.WarmPool, error) {
	p, err := s.store.FindWarmPool(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.owns(p.ProjectID) {
		return nil, standby.Errorf(standby.ENotFound, "warm pool %s not found", id)
	}
	return p, nil
}

func (s *Server) getPool(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.findPool(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, http.StatusOK, p.Version, p)
	return nil
}

func (s *Server) getPoolStatus(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.findPool(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, http.StatusOK, p.Version, poolStatus{
		Status:           p.Status,
		RolloutStatus:    p.RolloutStatus,
		DegradedReason:   p.DegradedReason,
		LastReconciledAt: p.LastReconciledAt,
		State:            p.State,
		Version:          p.Version,
	})
	return nil
}

// errChanged aborts an update whose record moved since it was read; the
// caller reads again and retries.
var errChanged = errors.New("record changed concurrently")

// errNoop aborts an update that would change nothing.
var errNoop = errors.New("nothing to change")

// maxUpdateAttempts bounds the read-validate-write retries of a PATCH that
// races other writers (without If-Match).
const maxUpdateAttempts = 5

func (s *Server) patchPool(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if _, err := s.findPool(r.Context(), c, id); err != nil {
		return err
	}
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	pp := decodePool(o)
	for range maxUpdateAttempts {
		cur, err := s.findPool(r.Context(), c, id)
		if err != nil {
			return err
		}
		if err := checkIfMatch(r, cur.Version); err != nil {
			return err
		}
		if cur.State == standby.PoolDeleted {
			return standby.Errorf(standby.EConflict, "warm pool %s is deleted", id)
		}
		next := *cur
		pp.apply(&next)
		if pp.set["min_ready"] && !pp.set["max_ready"] && cur.MaxReady == cur.MinReady {
			next.MaxReady = next.MinReady
		}
		if err := combine(*o.errs, next.Validate()); err != nil {
			return err
		}
		// Resolve again only when what the pool points at changed, so a
		// pinned pool stays pinned across unrelated patches.
		var build *standby.Build
		if next.TemplateRef != cur.TemplateRef || next.VersionPolicy != cur.VersionPolicy || resolveRef(&next) != resolveRef(cur) {
			if build, err = s.resolvePool(r.Context(), c.project, &next); err != nil {
				return err
			}
			next.SetResolvedBuild(build)
		}
		if pp.set["resources"] {
			if build == nil && next.ResolvedTemplateBuildID != nil {
				if build, err = s.store.FindBuild(r.Context(), c.project, *next.ResolvedTemplateBuildID); err != nil {
					return err
				}
			}
			if build != nil {
				next.Resources = next.Resources.FillFrom(build.Resources)
			}
		}
		next.UpdatedAt = s.clock.Now()
		updated, err := s.store.UpdateWarmPool(r.Context(), id, func(p *standby.WarmPool) error {
			if err := checkIfMatch(r, p.Version); err != nil {
				return err
			}
			if p.Version != cur.Version {
				return errChanged
			}
			copyPoolSpec(p, &next)
			return nil
		})
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			return err
		}
		s.ctrl.WakePool(id)
		writeUpdated(w, r, updated.Version, updated)
		return nil
	}
	return standby.Errorf(standby.EConflict, "warm pool %s is being changed concurrently; retry", id)
}

// poolTransition is one state action: it edits p (already known not to be
// deleted) or returns errNoop when p is already there.
type poolTransition func(p *standby.WarmPool, now time.Time) error

func (s *Server) poolAction(t poolTransition) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *caller) error {
		id := r.PathValue("id")
		if _, err := s.findPool(r.Context(), c, id); err != nil {
			return err
		}
		now := s.clock.Now()
		p, err := s.store.UpdateWarmPool(r.Context(), id, func(p *standby.WarmPool) error {
			if err := checkIfMatch(r, p.Version); err != nil {
				return err
			}
			if p.State == standby.PoolDeleted {
				return standby.Errorf(standby.EConflict, "warm pool %s is deleted", id)
			}
			if err := t(p, now); err != nil {
				return err
			}
			p.UpdatedAt = now
			return nil
		})
		if errors.Is(err, errNoop) {
			p, err = s.findPool(r.Context(), c, id)
		}
		if err != nil {
			return err
		}
		s.ctrl.WakePool(id)
		writeVersioned(w, http.StatusOK, p.Version, p)
		return nil
	}
}

func enablePool(p *standby.WarmPool, now time.Time) error {
	if p.State == standby.PoolEnabled {
		return errNoop
	}
	p.State, p.EnabledAt = standby.PoolEnabled, &now
	return nil
}

func disablePool(p *standby.WarmPool, now time.Time) error {
	if p.State == standby.PoolDisabled {
		return errNoop
	}
	p.State, p.DisabledAt = standby.PoolDisabled, &now
	return nil
}

func drainPool(p *standby.WarmPool, now time.Time) error {
	if p.State == standby.PoolDraining {
		return errNoop
	}
	p.State, p.DrainRequestedAt = standby.PoolDraining, &now
	return nil
}

func (s *Server) reconcilePool(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := s.findPool(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := checkIfMatch(r, p.Version); err != nil {
		return err
	}
	if p.State == standby.PoolDeleted {
		return standby.Errorf(standby.EConflict, "warm pool %s is deleted", p.ID)
	}
	s.ctrl.WakePool(p.ID)
	writeVersioned(w, http.StatusOK, p.Version, p)
	return nil
}

func (s *Server) deletePool(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	q := newQuery(r)
	force := q.boolean("force_delete")
	if err := q.err(); err != nil {
		return err
	}
	if _, err := s.findPool(r.Context(), c, id); err != nil {
		return err
	}
	now := s.clock.Now()
	_, err := s.store.UpdateWarmPool(r.Context(), id, func(p *standby.WarmPool) error {
		if err := checkIfMatch(r, p.Version); err != nil {
			return err
		}
		if p.State == standby.PoolDeleted {
			return errNoop
		}
		p.State, p.DeletedAt, p.UpdatedAt = standby.PoolDeleted, &now, now
		return nil
	})
	if err != nil && !errors.Is(err, errNoop) {
		return err
	}
	if force {
		if err := s.stopPoolSandboxes(r.Context(), c.project, id); err != nil {
			return err
		}
	}
	s.log.Info("warm pool deleted", "project", c.project, "pool", id, "force", force)
	s.ctrl.WakePool(id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// stopPoolSandboxes asks for every running sandbox checked out of the pool
// to be stopped.
func (s *Server) stopPoolSandboxes(ctx context.Context, projectID, poolID string) error {
	f := standby.SandboxFilter{ProjectID: projectID, WarmPoolID: poolID, States: []string{standby.SandboxRunning}, Page: standby.Page{Size: standby.MaxPageSize}}
	var ids []string
	for {
		items, next, err := s.store.FindSandboxes(ctx, f)
		if err != nil {
			return err
		}
		for _, sb := range items {
			ids = append(ids, sb.ID)
		}
		if next == "" {
			break
		}
		f.Page.Token = next
	}
	for _, id := range ids {
		if err := s.stopSandbox(ctx, nil, id); err != nil && !errors.Is(err, errNoop) {
			return err
		}
	}
	return nil
}
