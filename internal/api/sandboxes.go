package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/standbyhq/standby"
)

// sandboxRequest is the body of POST /v1/sandboxes.
type sandboxRequest struct {
	Template    string             `json:"template"`
	WarmPool    *warmPoolRequest   `json:"warm_pool"`
	VCPUs       float64            `json:"vcpus"`
	MemoryMB    int                `json:"memory_mb"`
	DiskMB      int                `json:"disk_mb"`
	TimeoutMS   int64              `json:"timeout_ms"`
	Env         map[string]string  `json:"env"`
	Metadata    map[string]any     `json:"metadata"`
	Labels      map[string]string  `json:"labels"`
	Annotations map[string]string  `json:"annotations"`
	Selectors   []standby.Selector `json:"selectors"`
}

// warmPoolRequest is the warm_pool object of POST /v1/sandboxes.
type warmPoolRequest struct {
	ID     string `json:"id"`
	Mode   string `json:"mode"`
	WaitMS int    `json:"wait_ms"`
}

// timeoutRequest is the body of POST /v1/sandboxes/{id}/timeout.
type timeoutRequest struct {
	TimeoutMS int64 `json:"timeout_ms"`
}

// sandboxInput is a decoded, validated create request.
type sandboxInput struct {
	sandboxRequest
	hasVCPUs, hasMemory, hasDisk, hasTimeout bool
	metadata                                 []byte
}

func decodeSandbox(r *http.Request) (*sandboxInput, error) {
	o, err := decodeBody(r)
	if err != nil {
		return nil, err
	}
	in := &sandboxInput{}
	get(o, "template", &in.Template)
	in.WarmPool = &warmPoolRequest{}
	if wp := o.sub("warm_pool", true); wp != nil {
		get(wp, "id", &in.WarmPool.ID)
		get(wp, "mode", &in.WarmPool.Mode)
		get(wp, "wait_ms", &in.WarmPool.WaitMS)
		wp.finish()
	}
	in.hasVCPUs = get(o, "vcpus", &in.VCPUs)
	in.hasMemory = get(o, "memory_mb", &in.MemoryMB)
	in.hasDisk = get(o, "disk_mb", &in.DiskMB)
	in.hasTimeout = get(o, "timeout_ms", &in.TimeoutMS)
	get(o, "env", &in.Env)
	in.metadata, _ = o.rawObject("metadata")
	get(o, "labels", &in.Labels)
	get(o, "annotations", &in.Annotations)
	get(o, "selectors", &in.Selectors)
	o.finish()

	var d standby.Errors
	if in.Template == "" && in.WarmPool.ID == "" && !hasFieldError(*o.errs, "template") {
		d.Add("template", "is required unless warm_pool.id is given")
	}
	if in.Template != "" {
		if _, err := standby.ParseTemplateRef(in.Template); err != nil {
			d.Add("template", "%v", err)
		}
	}
	switch in.WarmPool.Mode {
	case "", standby.ModePrefer, standby.ModeRequire, standby.ModeBypass:
	default:
		d.Add("warm_pool.mode", "must be one of prefer, require, bypass")
	}
	if in.WarmPool.WaitMS < 0 || in.WarmPool.WaitMS > standby.MaxWaitMS {
		d.Add("warm_pool.wait_ms", "must be from 0 to %d", standby.MaxWaitMS)
	}
	if in.hasTimeout && (in.TimeoutMS < 1 || in.TimeoutMS > standby.MaxTimeoutMS) {
		d.Add("timeout_ms", "must be from 1 to %d", standby.MaxTimeoutMS)
	}
	if in.hasVCPUs && (in.VCPUs <= 0 || in.VCPUs > 256) {
		d.Add("vcpus", "must be > 0 and <= 256")
	}
	if in.hasMemory && (in.MemoryMB < 1 || in.MemoryMB > 1<<20) {
		d.Add("memory_mb", "must be >= 1 and <= 1048576")
	}
	if in.hasDisk && (in.DiskMB < 1 || in.DiskMB > 1<<24) {
		d.Add("disk_mb", "must be >= 1 and <= 16777216")
	}
	standby.ValidateEnv("env", in.Env, &d)
	standby.ValidateLabels("labels", in.Labels, &d)
	standby.ValidateAnnotations("annotations", in.Annotations, &d)
	for i, sel := range in.Selectors {
		standby.ValidateLabels(fmt.Sprintf("selectors[%d].labels", i), sel.Labels, &d)
	}
	if err := combine(*o.errs, d.Err()); err != nil {
		return nil, err
	}
	if in.Labels == nil {
		in.Labels = map[string]string{}
	}
	if in.Annotations == nil {
		in.Annotations = map[string]string{}
	}
	if in.metadata == nil {
		in.metadata = []byte("{}")
	}
	return in, nil
}

// serves reports whether a pool's instances fit the request: same build,
// the same resources where the request names any, and no create-time env
// (a warm instance started long ago without it).
func (in *sandboxInput) serves(p *standby.WarmPool, build *standby.Build) bool {
	switch {
	case p.ResolvedTemplateBuildID == nil || *p.ResolvedTemplateBuildID != build.ID:
		return false
	case in.hasVCPUs && in.VCPUs != p.Resources.VCPUs,
		in.hasMemory && in.MemoryMB != p.Resources.MemoryMB,
		in.hasDisk && in.DiskMB != p.Resources.DiskMB:
		return false
	case len(in.Env) > 0:
		return false
	}
	return true
}

func (s *Server) createSandbox(w http.ResponseWriter, r *http.Request, c *caller) error {
	in, err := decodeSandbox(r)
	if err != nil {
		return err
	}
	ctx := r.Context()

	var pool *standby.WarmPool
	var build *standby.Build
	if id := in.WarmPool.ID; id != "" {
		// From the cache: the pool and its build are read on every
		// checkout and change rarely. Shared records: read only.
		var poolBuild *standby.Build
		pool, poolBuild, err = s.cache.pool(ctx, s.store, id)
		if err == nil && !c.owns(pool.ProjectID) {
			err = standby.Errorf(standby.ENotFound, "warm pool %s not found", id)
		}
		if err != nil {
			if standby.IsCode(err, standby.ENotFound) {
				return standby.FieldError("warm_pool.id", "warm pool %s not found", id)
			}
			return err
		}
		if pool.State == standby.PoolDeleted {
			return standby.FieldError("warm_pool.id", "warm pool %s is deleted", id)
		}
		if pool.ResolvedTemplateBuildID == nil {
			return standby.Errorf(standby.EWarmPoolUnavailable, "warm pool %s has no resolved build", id)
		}
		if in.Template == "" {
			if build = poolBuild; build == nil {
				return standby.Errorf(standby.ENotFound, "build %s not found", *pool.ResolvedTemplateBuildID)
			}
		}
	}
	if in.Template != "" {
		if build, err = s.cache.templateRef(ctx, s.store, c.project, in.Template); err != nil {
			if list := standby.ErrorList(err); len(list) > 0 && (list[0].Code == standby.ENotFound || list[0].Code == standby.EValidation) {
				return standby.FieldError("template", "%s", list[0].Message)
			}
			return err
		}
	}

	mode := in.WarmPool.Mode
	if mode == "" {
		mode = standby.ModePrefer
		if pool != nil {
			mode = pool.CheckoutPolicy
		}
	}
	var candidates []*standby.WarmPool
	switch {
	case mode == standby.ModeBypass:
	case pool != nil:
		if in.serves(pool, build) {
			candidates = []*standby.WarmPool{pool}
		}
	default:
		if candidates, err = s.candidatePools(ctx, c.project, in, build); err != nil {
			return err
		}
	}

	sb := &standby.Sandbox{
		ID:          standby.NewID(standby.PrefixSandbox),
		ProjectID:   c.project,
		Template:    build.Template,
		State:       standby.SandboxRunning,
		Ports:       map[string]int{},
		Metadata:    in.metadata,
		Labels:      in.Labels,
		Annotations: in.Annotations,
		Version:     1,
	}
	if len(candidates) > 0 {
		got, err := s.checkout(ctx, c, in, sb, mode, build, candidates)
		if err == nil {
			s.ctrl.PoolCheckedOut(got.WarmPoolCheckout.ID)
			writeVersioned(w, http.StatusCreated, got.Version, got)
			return nil
		}
		if !standby.IsCode(err, standby.EWarmPoolUnavailable) || mode == standby.ModeRequire {
			return err
		}
	} else if mode == standby.ModeRequire {
		return standby.Errorf(standby.EWarmPoolUnavailable, "no enabled warm pool serves this request (template build, resources and env must match)")
	}

	// Cold start.
	// A pool's resources apply when it runs this build; another build
	// brings its own.
	sb.Config = build.Resources
	if pool != nil && pool.ResolvedTemplateBuildID != nil && *pool.ResolvedTemplateBuildID == build.ID {
		sb.Config = pool.Resources
	}
	if in.hasVCPUs {
		sb.Config.VCPUs = in.VCPUs
	}
	if in.hasMemory {
		sb.Config.MemoryMB = in.MemoryMB
	}
	if in.hasDisk {
		sb.Config.DiskMB = in.DiskMB
	}
	sb.TimeoutMS = standby.DefaultTimeoutMS
	if in.hasTimeout {
		sb.TimeoutMS = in.TimeoutMS
	}
	sb.TemplateBuildID = build.ID
	sb.WarmPoolCheckout = standby.WarmPoolCheckout{Source: standby.SourceCold, Hit: false, ID: in.WarmPool.ID, Mode: mode}
	now := s.clock.Now()
	sb.CreatedAt, sb.StartedAt = now, now
	sb.ExpiresAt = now.Add(time.Duration(sb.TimeoutMS) * time.Millisecond)
	env := in.Env
	if env == nil {
		env = map[string]string{}
	}
	got, err := s.ctrl.ColdStart(ctx, sb, build, env)
	if err != nil {
		return err
	}
	s.log.Info("sandbox cold-started", "project", c.project, "sandbox", got.ID, "build", build.ID)
	writeVersioned(w, http.StatusCreated, got.Version, got)
	return nil
}

// candidatePools lists the enabled pools of the project that serve the
// request, oldest first.
func (s *Server) candidatePools(ctx context.Context, projectID string, in *sandboxInput, build *standby.Build) ([]*standby.WarmPool, error) {
	f := standby.WarmPoolFilter{ProjectID: projectID, States: []string{standby.PoolEnabled}, Page: standby.Page{Size: standby.MaxPageSize}}
	var out []*standby.WarmPool
	for {
		items, next, err := s.store.FindWarmPools(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, p := range items {
			if in.serves(p, build) {
				out = append(out, p)
			}
		}
		if next == "" {
			return out, nil
		}
		f.Page.Token = next
	}
}

// checkout claims a ready instance from the candidates, waiting up to
// wait_ms for one to become ready. It returns warm_pool_unavailable on a
// miss.
func (s *Server) checkout(ctx context.Context, c *caller, in *sandboxInput, base *standby.Sandbox, mode string, build *standby.Build, candidates []*standby.WarmPool) (*standby.Sandbox, error) {
	ids := make([]string, len(candidates))
	byID := make(map[string]*standby.WarmPool, len(candidates))
	for i, p := range candidates {
		ids[i] = p.ID
		byID[p.ID] = p
	}
	first := candidates[0]
	timeoutOf := func(p *standby.WarmPool) int64 {
		if in.hasTimeout {
			return in.TimeoutMS
		}
		return int64(p.IdleTimeoutSeconds) * 1000
	}
	var deadline *time.Timer
	if in.WarmPool.WaitMS > 0 {
		deadline = time.NewTimer(time.Duration(in.WarmPool.WaitMS) * time.Millisecond)
		defer deadline.Stop()
	}
	for {
		// Subscribe before trying, so a ready event between a miss and
		// the wait is not lost.
		var ready <-chan struct{}
		if deadline != nil {
			ready = s.ctrl.Ready()
		}
		now := s.clock.Now()
		sb := *base
		sb.Config = first.Resources
		sb.TemplateBuildID = build.ID
		sb.TimeoutMS = timeoutOf(first)
		sb.CreatedAt, sb.StartedAt = now, now
		sb.ExpiresAt = now.Add(time.Duration(sb.TimeoutMS) * time.Millisecond)
		sb.WarmPoolCheckout = standby.WarmPoolCheckout{Source: standby.SourceWarmPool, Hit: true, Mode: mode}
		got, err := s.store.Checkout(ctx, standby.CheckoutRequest{
			ProjectID: c.project,
			PoolIDs:   ids,
			BuildID:   build.ID,
			Selectors: in.Selectors,
			Sandbox:   &sb,
			Now:       now,
		})
		if err == nil {
			return s.fitToPool(ctx, got, byID[got.WarmPoolCheckout.ID], first, timeoutOf)
		}
		if !standby.IsCode(err, standby.EWarmPoolUnavailable) || deadline == nil {
			return nil, err
		}
		select {
		case <-ready:
		case <-deadline.C:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// fitToPool corrects the resources and timeout of a sandbox checked out of
// another candidate pool than the first, whose values were guessed before
// the store picked.
func (s *Server) fitToPool(ctx context.Context, sb *standby.Sandbox, p, guessed *standby.WarmPool, timeoutOf func(*standby.WarmPool) int64) (*standby.Sandbox, error) {
	if p == nil || p == guessed || (p.Resources == guessed.Resources && timeoutOf(p) == timeoutOf(guessed)) {
		return sb, nil
	}
	return s.store.UpdateSandbox(ctx, sb.ID, func(cur *standby.Sandbox) error {
		cur.Config = p.Resources
		cur.TimeoutMS = timeoutOf(p)
		cur.ExpiresAt = cur.StartedAt.Add(time.Duration(cur.TimeoutMS) * time.Millisecond)
		return nil
	})
}

func (s *Server) listSandboxes(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	f := standby.SandboxFilter{
		ProjectID:  c.project,
		Page:       q.page(),
		Labels:     q.labels(),
		States:     q.states(standby.SandboxRunning, standby.SandboxStopping, standby.SandboxStopped, standby.SandboxFailed, standby.SandboxExpired),
		Template:   r.URL.Query().Get("template"),
		WarmPoolID: r.URL.Query().Get("warm_pool_id"),
	}
	if err := q.err(); err != nil {
		return err
	}
	items, next, err := s.store.FindSandboxes(r.Context(), f)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// findSandbox returns a sandbox of the caller's project (404 otherwise).
func (s *Server) findSandbox(ctx context.Context, c *caller, id string) (*standby.Sandbox, error) {
	sb, err := s.store.FindSandbox(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.owns(sb.ProjectID) {
		return nil, standby.Errorf(standby.ENotFound, "sandbox %s not found", id)
	}
	return sb, nil
}

func (s *Server) getSandbox(w http.ResponseWriter, r *http.Request, c *caller) error {
	sb, err := s.findSandbox(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeVersioned(w, http.StatusOK, sb.Version, sb)
	return nil
}

// stopSandbox sets a running sandbox to stopping and wakes the controller;
// errNoop when it is already stopping or ended. r, when not nil, carries
// the If-Match to check.
func (s *Server) stopSandbox(ctx context.Context, r *http.Request, id string) error {
	_, err := s.store.UpdateSandbox(ctx, id, func(sb *standby.Sandbox) error {
		if r != nil {
			if err := checkIfMatch(r, sb.Version); err != nil {
				return err
			}
		}
		if sb.State != standby.SandboxRunning {
			return errNoop
		}
		sb.State = standby.SandboxStopping
		return nil
	})
	if err != nil {
		return err
	}
	s.ctrl.WakeSandbox(id)
	return nil
}

func (s *Server) deleteSandbox(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if _, err := s.findSandbox(r.Context(), c, id); err != nil {
		return err
	}
	if err := s.stopSandbox(r.Context(), r, id); err != nil && !errors.Is(err, errNoop) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) setSandboxTimeout(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if _, err := s.findSandbox(r.Context(), c, id); err != nil {
		return err
	}
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	var req timeoutRequest
	if !get(o, "timeout_ms", &req.TimeoutMS) && !o.has("timeout_ms") {
		o.add("timeout_ms", "is required")
	}
	o.finish()
	var d standby.Errors
	if req.TimeoutMS < 1 || req.TimeoutMS > standby.MaxTimeoutMS {
		d.Add("timeout_ms", "must be from 1 to %d", standby.MaxTimeoutMS)
	}
	if err := combine(*o.errs, d.Err()); err != nil {
		return err
	}
	now := s.clock.Now()
	sb, err := s.store.UpdateSandbox(r.Context(), id, func(sb *standby.Sandbox) error {
		if err := checkIfMatch(r, sb.Version); err != nil {
			return err
		}
		if sb.State != standby.SandboxRunning {
			return standby.Errorf(standby.EConflict, "sandbox %s is %s", id, sb.State)
		}
		sb.TimeoutMS = req.TimeoutMS
		sb.ExpiresAt = now.Add(time.Duration(req.TimeoutMS) * time.Millisecond)
		return nil
	})
	if err != nil {
		return err
	}
	writeVersioned(w, http.StatusOK, sb.Version, sb)
	return nil
}

func (s *Server) putSandboxKV(k kv) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *caller) error {
		id := r.PathValue("id")
		if _, err := s.findSandbox(r.Context(), c, id); err != nil {
			return err
		}
		key, value, err := k.decodePut(r)
		if err != nil {
			return err
		}
		sb, err := s.store.UpdateSandbox(r.Context(), id, func(sb *standby.Sandbox) error {
			if err := checkIfMatch(r, sb.Version); err != nil {
				return err
			}
			return k.set(k.pick(&sb.Labels, &sb.Annotations), key, value)
		})
		if err != nil {
			return err
		}
		writeVersioned(w, http.StatusOK, sb.Version, sb)
		return nil
	}
}

func (s *Server) deleteSandboxKV(k kv) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *caller) error {
		id, key := r.PathValue("id"), r.PathValue("key")
		if _, err := s.findSandbox(r.Context(), c, id); err != nil {
			return err
		}
		sb, err := s.store.UpdateSandbox(r.Context(), id, func(sb *standby.Sandbox) error {
			if err := checkIfMatch(r, sb.Version); err != nil {
				return err
			}
			m := k.pick(&sb.Labels, &sb.Annotations)
			if _, ok := (*m)[key]; !ok {
				return errNoop
			}
			delete(*m, key)
			return nil
		})
		if err != nil && !errors.Is(err, errNoop) {
			return err
		}
		if sb != nil {
			w.Header().Set("ETag", etag(sb.Version))
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *Server) sandboxLogs(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	opt := standby.LogOptions{Stream: r.URL.Query().Get("stream"), Follow: q.boolean("follow")}
	switch opt.Stream {
	case "":
		opt.Stream = "stdout"
	case "stdout", "stderr":
	default:
		q.errs.Add("stream", "must be stdout or stderr")
	}
	if v := r.URL.Query().Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			q.errs.Add("tail", "must be an integer >= 0")
		}
		opt.Tail = n
	}
	if err := q.err(); err != nil {
		return err
	}
	sb, agent, err := s.sandboxAgent(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	lw := &logWriter{w: w}
	if opt.Follow {
		// Headers now, so a follower sees the stream open before output.
		lw.rc = http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		_ = lw.rc.Flush()
	}
	err = agent.Logs(r.Context(), sb.InstanceID, opt, lw)
	if err != nil && r.Context().Err() != nil {
		return nil // the follower left
	}
	return err
}

// logWriter copies log output to the response, flushing each write when
// following.
type logWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (l *logWriter) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	if err == nil && l.rc != nil {
		err = l.rc.Flush()
	}
	return n, err
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request, _ *caller) error {
	hosts, err := s.store.FindHosts(r.Context())
	if err != nil {
		return err
	}
	writeList(w, hosts, "")
	return nil
}
