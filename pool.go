package standby

import (
	"encoding/json"
	"time"
)

// Checkout policies (a pool's default sandbox-create mode).
const (
	ModePrefer  = "prefer"  // wait up to wait_ms for a ready instance, then cold start
	ModeRequire = "require" // wait up to wait_ms, then 503 warm_pool_unavailable
	ModeBypass  = "bypass"  // always cold start
)

// Version policies.
const (
	PolicyPinnedBuild = "pinned_build"
	PolicyTrackTag    = "track_tag"
)

// Pool states.
const (
	PoolEnabled  = "enabled"
	PoolDisabled = "disabled"
	PoolDraining = "draining"
	PoolDeleted  = "deleted"
)

// Degraded reasons.
const (
	DegradedNoEligibleHosts          = "no_eligible_hosts"
	DegradedArtifactNotReady         = "artifact_not_ready"
	DegradedArtifactPrewarmFailed    = "artifact_prewarm_failed"
	DegradedQuotaExceeded            = "quota_exceeded"
	DegradedTemplateBuildUnavailable = "template_build_unavailable"
	DegradedControllerDisabled       = "controller_disabled"
	DegradedDrainActive              = "drain_active"
)

// Rollout phases.
const (
	RolloutProgressing = "progressing"
	RolloutComplete    = "complete"
	RolloutStalled     = "stalled"
)

// Pool defaults.
const (
	DefaultIdleTimeoutSeconds = 300
	DefaultStaleAfterSeconds  = 3600
	MaxPoolNameLen            = 160
	MaxPoolSize               = 10000
)

// WarmPoolStatus counts a pool's instances (seed 000). Target and
// Unavailable come from the controller; the other counts are computed by the
// store from the instance and sandbox records whenever a pool is read, so
// they are always true.
type WarmPoolStatus struct {
	Target      int `json:"target"`
	Ready       int `json:"ready"`
	Warming     int `json:"warming"`
	Claimed     int `json:"claimed"`
	Draining    int `json:"draining"`
	Failed      int `json:"failed"`  // failed to start or died while ready, last hour
	Expired     int `json:"expired"` // sandboxes ended by their timeout, last hour
	Unavailable int `json:"unavailable"`
}

// RolloutStatus is the controller's rollout diagnostics (seed 000 leaves
// its shape open).
type RolloutStatus struct {
	Phase         string         `json:"phase"`
	TargetBuildID string         `json:"target_build_id,omitempty"`
	CurrentCounts map[string]int `json:"current_counts"` // ready+warming by build id
	Message       string         `json:"message,omitempty"`
}

// WarmPool is seed 000's template warm pool, field for field, plus version.
type WarmPool struct {
	ID                              string            `json:"id"`
	ProjectID                       string            `json:"-"`
	Name                            string            `json:"name"`
	TemplateRef                     string            `json:"template_ref"`
	ResolvedTemplate                string            `json:"resolved_template"`
	Resources                       Resources         `json:"resources"`
	MinReady                        int               `json:"min_ready"`
	MaxReady                        int               `json:"max_ready"`
	IdleTimeoutSeconds              int               `json:"idle_timeout_seconds"`
	StaleAfterSeconds               int               `json:"stale_after_seconds"`
	CheckoutPolicy                  string            `json:"checkout_policy"`
	VersionPolicy                   string            `json:"version_policy"`
	RolloutGeneration               int64             `json:"rollout_generation"`
	RolloutStatus                   RolloutStatus     `json:"rollout_status"`
	Status                          WarmPoolStatus    `json:"status"`
	State                           string            `json:"state"`
	Labels                          map[string]string `json:"labels"`
	Metadata                        json.RawMessage   `json:"metadata"`
	CreatedAt                       time.Time         `json:"created_at"`
	UpdatedAt                       time.Time         `json:"updated_at"`
	ResolvedTemplateBuildID         *string           `json:"resolved_template_build_id"`
	RuntimeArtifactID               *string           `json:"runtime_artifact_id"`
	HostPoolID                      *string           `json:"host_pool_id"`
	CellID                          *string           `json:"cell_id"`
	CompatibilityKey                *string           `json:"compatibility_key"`
	TrackTag                        *string           `json:"track_tag"`
	PreviousResolvedTemplate        *string           `json:"previous_resolved_template"`
	PreviousResolvedTemplateBuildID *string           `json:"previous_resolved_template_build_id"`
	PreviousRuntimeArtifactID       *string           `json:"previous_runtime_artifact_id"`
	DegradedReason                  *string           `json:"degraded_reason"`
	EnabledAt                       *time.Time        `json:"enabled_at"`
	DisabledAt                      *time.Time        `json:"disabled_at"`
	DrainRequestedAt                *time.Time        `json:"drain_requested_at"`
	LastReconciledAt                *time.Time        `json:"last_reconciled_at"`
	DeletedAt                       *time.Time        `json:"deleted_at"`
	Version                         int64             `json:"version"`
}

// WarmPoolControllerStatus is what the controller writes after each look at
// a pool. Writing it does not change the pool's version.
type WarmPoolControllerStatus struct {
	Target           int
	Unavailable      int
	RolloutStatus    RolloutStatus
	DegradedReason   *string
	LastReconciledAt time.Time
}

// EffectiveTrackTag returns the tag a track_tag pool follows: track_tag, or
// the tag spelled in template_ref.
func (p *WarmPool) EffectiveTrackTag() string {
	if p.TrackTag != nil && *p.TrackTag != "" {
		return *p.TrackTag
	}
	if r, err := ParseTemplateRef(p.TemplateRef); err == nil && r.ExplicitTag {
		return r.Tag
	}
	return ""
}

// ApplyDefaults fills the defaults of a new pool.
func (p *WarmPool) ApplyDefaults() {
	if p.IdleTimeoutSeconds == 0 {
		p.IdleTimeoutSeconds = DefaultIdleTimeoutSeconds
	}
	if p.StaleAfterSeconds == 0 {
		p.StaleAfterSeconds = DefaultStaleAfterSeconds
	}
	if p.CheckoutPolicy == "" {
		p.CheckoutPolicy = ModePrefer
	}
	if p.VersionPolicy == "" {
		p.VersionPolicy = PolicyPinnedBuild
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	if len(p.Metadata) == 0 {
		p.Metadata = json.RawMessage("{}")
	}
	if p.State == "" {
		p.State = PoolEnabled
	}
}

// Validate checks a pool's user-settable fields (seed 000's rules) and
// returns Errors with one entry per bad field.
func (p *WarmPool) Validate() error {
	var errs Errors
	if len(p.Name) < 1 || len(p.Name) > MaxPoolNameLen {
		errs.Add("name", "must be 1-%d characters", MaxPoolNameLen)
	}
	if p.TemplateRef == "" {
		errs.Add("template_ref", "is required")
	} else if _, err := ParseTemplateRef(p.TemplateRef); err != nil {
		errs.Add("template_ref", "%v", err)
	}
	if p.MinReady < 0 {
		errs.Add("min_ready", "must be >= 0")
	} else if p.MinReady > MaxPoolSize {
		errs.Add("min_ready", "must be <= %d", MaxPoolSize)
	}
	if p.MaxReady < 0 {
		errs.Add("max_ready", "must be >= 0")
	} else if p.MaxReady > MaxPoolSize {
		errs.Add("max_ready", "must be <= %d", MaxPoolSize)
	} else if p.MaxReady < p.MinReady {
		errs.Add("max_ready", "must be >= min_ready (%d)", p.MinReady)
	}
	ValidateResources("resources", p.Resources, &errs)
	switch p.CheckoutPolicy {
	case ModePrefer, ModeRequire, ModeBypass:
	default:
		errs.Add("checkout_policy", "must be one of prefer, require, bypass")
	}
	if p.IdleTimeoutSeconds < 1 {
		errs.Add("idle_timeout_seconds", "must be >= 1")
	}
	if p.StaleAfterSeconds < 1 {
		errs.Add("stale_after_seconds", "must be >= 1")
	}
	switch p.VersionPolicy {
	case PolicyPinnedBuild:
	case PolicyTrackTag:
		if p.TrackTag != nil && *p.TrackTag != "" {
			if err := ValidateLabelKey(*p.TrackTag); err != nil {
				errs.Add("track_tag", "%v", err)
			}
		} else if p.EffectiveTrackTag() == "" {
			errs.Add("track_tag", "is required with version_policy track_tag unless template_ref names a tag (name:tag)")
		}
	default:
		errs.Add("version_policy", "must be one of pinned_build, track_tag")
	}
	if p.VersionPolicy == PolicyTrackTag && p.TemplateRef != "" {
		if r, err := ParseTemplateRef(p.TemplateRef); err == nil && r.BuildID != "" {
			errs.Add("template_ref", "a build ref (name@tb_…) cannot be tracked; use name or name:tag with version_policy track_tag")
		}
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"host_pool_id", p.HostPoolID}, {"cell_id", p.CellID}} {
		if f.v != nil && len(*f.v) > 160 {
			errs.Add(f.name, "must be at most 160 characters")
		}
	}
	if len(p.Metadata) > MaxMetadataBytes {
		errs.Add("metadata", "must be at most %d bytes", MaxMetadataBytes)
	}
	return errs.Err()
}

// Instance states.
const (
	InstanceWarming  = "warming"
	InstanceReady    = "ready"
	InstanceClaimed  = "claimed"
	InstanceDraining = "draining"
	InstanceFailed   = "failed"
)

// Instance is one started process of a build: warming in a pool, ready in a
// pool, or claimed by a sandbox (seed 001's payload). A cold-started
// sandbox's instance has no pool.
type Instance struct {
	ID              string            `json:"id"`
	ProjectID       string            `json:"-"`
	PoolID          string            `json:"warm_pool_id,omitempty"`
	State           string            `json:"state"`
	TemplateBuildID string            `json:"template_build_id"`
	HostID          string            `json:"host_id"`
	Address         string            `json:"address"`
	Ports           map[string]int    `json:"ports"`
	Labels          map[string]string `json:"labels"`
	Annotations     map[string]string `json:"annotations"`
	SandboxID       *string           `json:"sandbox_id"`
	// RolloutGeneration is the pool's generation when the instance was
	// started.
	RolloutGeneration int64      `json:"rollout_generation"`
	Reason            string     `json:"reason,omitempty"` // why it failed or is draining
	CreatedAt         time.Time  `json:"created_at"`
	ReadyAt           *time.Time `json:"ready_at"`
	// EndedAt is when it failed or started draining.
	EndedAt *time.Time `json:"ended_at,omitempty"`
}
