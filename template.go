package standby

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Template is a named, versioned recipe for instances. Its builds are
// immutable; tags (always including "latest") point at builds.
type Template struct {
	ID          string            `json:"id"`
	ProjectID   string            `json:"project_id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	Builtin     bool              `json:"builtin"`
	// Tags maps each tag to the build it points at. Filled by the store.
	Tags      map[string]string `json:"tags"`
	Version   int64             `json:"version"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`
}

// Build statuses.
const (
	BuildReady  = "ready"
	BuildFailed = "failed"
)

// TagLatest is moved to every new build.
const TagLatest = "latest"

// Port is a named port of a build; the agent assigns a free host port.
type Port struct {
	Name string `json:"name"`
}

// Health check types (seed 002).
const (
	CheckPort    = "port"
	CheckProcess = "process"
	CheckHTTP    = "http"
)

// HealthCheck is seed 002's check shape. Times are in seconds.
type HealthCheck struct {
	Type string          `json:"type"`
	Data HealthCheckData `json:"data"`
}

// HealthCheckData holds a check's settings. Timeout is how long the instance
// has to pass its first check (readiness) before it counts as failed to
// start; InvocationTimeout bounds one probe; Interval is the time between
// probes once healthy; Endpoint is the HTTP path for type http.
type HealthCheckData struct {
	Timeout           int    `json:"timeout"`
	InvocationTimeout int    `json:"invocation_timeout"`
	Interval          int    `json:"interval"`
	Endpoint          string `json:"endpoint,omitempty"`
}

// Health check defaults, in seconds.
const (
	DefaultCheckTimeout           = 60
	DefaultCheckInvocationTimeout = 1
	DefaultCheckInterval          = 1
)

// WithDefaults returns the check with zero settings replaced by defaults.
func (h HealthCheck) WithDefaults() HealthCheck {
	if h.Data.Timeout <= 0 {
		h.Data.Timeout = DefaultCheckTimeout
	}
	if h.Data.InvocationTimeout <= 0 {
		h.Data.InvocationTimeout = DefaultCheckInvocationTimeout
	}
	if h.Data.Interval <= 0 {
		h.Data.Interval = DefaultCheckInterval
	}
	if h.Type == CheckHTTP && h.Data.Endpoint == "" {
		h.Data.Endpoint = "/"
	}
	return h
}

// Resources of an instance. VCPUs may be fractional.
type Resources struct {
	VCPUs    float64 `json:"vcpus"`
	MemoryMB int     `json:"memory_mb"`
	DiskMB   int     `json:"disk_mb"`
}

// Default resources of a build that names none.
var DefaultResources = Resources{VCPUs: 1, MemoryMB: 512, DiskMB: 1024}

// WithDefaults fills zero fields from DefaultResources.
func (r Resources) WithDefaults() Resources { return r.fill(DefaultResources) }

// FillFrom takes each field r leaves unset from base, then the defaults:
// what an instance gets from its pool's (or sandbox's) resources over
// its build's.
func (r Resources) FillFrom(base Resources) Resources { return r.fill(base).WithDefaults() }

// fill takes each field r leaves unset (zero or less) from base.
func (r Resources) fill(base Resources) Resources {
	if r.VCPUs <= 0 {
		r.VCPUs = base.VCPUs
	}
	if r.MemoryMB <= 0 {
		r.MemoryMB = base.MemoryMB
	}
	if r.DiskMB <= 0 {
		r.DiskMB = base.DiskMB
	}
	return r
}

// Build is an immutable version of a template.
type Build struct {
	ID                   string            `json:"id"`
	ProjectID            string            `json:"project_id"`
	Template             string            `json:"template"`
	Number               int64             `json:"number"`
	Status               string            `json:"status"`
	CanonicalRef         string            `json:"canonical_ref"`
	RuntimeArtifactID    string            `json:"runtime_artifact_id"`
	CompatibilityKey     string            `json:"compatibility_key"`
	StartCmd             []string          `json:"start_cmd"`
	Env                  map[string]string `json:"env"`
	Workdir              string            `json:"workdir"`
	Files                map[string]string `json:"files"`
	Ports                []Port            `json:"ports"`
	HealthCheck          *HealthCheck      `json:"health_check"`
	ReadinessHealthCheck *HealthCheck      `json:"readiness_health_check"`
	Resources            Resources         `json:"resources"`
	// Tags are the tags pointing at this build now (filled by the store).
	Tags      []string  `json:"tags"`
	CreatedAt time.Time `json:"created_at"`
}

// Normalize makes the build's maps and slices non-nil, so they go on the
// wire as {} and [] rather than null.
func (b *Build) Normalize() {
	if b.StartCmd == nil {
		b.StartCmd = []string{}
	}
	if b.Env == nil {
		b.Env = map[string]string{}
	}
	if b.Files == nil {
		b.Files = map[string]string{}
	}
	if b.Ports == nil {
		b.Ports = []Port{}
	}
	if b.Tags == nil {
		b.Tags = []string{}
	}
}

// Readiness returns the check that decides readiness: the readiness check,
// else the health check, else port when the build has ports, else process.
func (b *Build) Readiness() HealthCheck {
	switch {
	case b.ReadinessHealthCheck != nil:
		return b.ReadinessHealthCheck.WithDefaults()
	case b.HealthCheck != nil:
		return b.HealthCheck.WithDefaults()
	case len(b.Ports) > 0:
		return HealthCheck{Type: CheckPort}.WithDefaults()
	default:
		return HealthCheck{Type: CheckProcess}.WithDefaults()
	}
}

// Liveness returns the check run once ready: the health check, else process.
func (b *Build) Liveness() HealthCheck {
	if b.HealthCheck != nil {
		return b.HealthCheck.WithDefaults()
	}
	return HealthCheck{Type: CheckProcess}.WithDefaults()
}

// Seal fills the derived fields of a new build: canonical ref, artifact id
// (a digest of what runs) and compatibility key (a digest of what a checkout
// must match: artifact and resources).
func (b *Build) Seal() {
	b.CanonicalRef = b.Template + "@" + b.ID
	runtime, _ := json.Marshal(struct {
		StartCmd  []string          `json:"s"`
		Env       map[string]string `json:"e"`
		Workdir   string            `json:"w"`
		Files     map[string]string `json:"f"`
		Ports     []Port            `json:"p"`
		Readiness HealthCheck       `json:"r"`
		Liveness  HealthCheck       `json:"l"`
	}{b.StartCmd, b.Env, b.Workdir, b.Files, b.Ports, b.Readiness(), b.Liveness()})
	sum := sha256.Sum256(runtime)
	b.RuntimeArtifactID = PrefixArtifact + hex.EncodeToString(sum[:12])
	compat := fmt.Sprintf("%s|%g|%d|%d", b.RuntimeArtifactID, b.Resources.VCPUs, b.Resources.MemoryMB, b.Resources.DiskMB)
	sum = sha256.Sum256([]byte(compat))
	b.CompatibilityKey = "ck_" + hex.EncodeToString(sum[:12])
}

var (
	envNameRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	portNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,14}$`)
)

// ValidateRelPath checks a path that must stay inside a root: relative,
// clean of "..", not empty.
func ValidateRelPath(p string) error {
	if p == "" {
		return fmt.Errorf("path must not be empty")
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, "\x00") {
		return fmt.Errorf("path %q must be relative", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return fmt.Errorf("path %q must not leave the instance root", p)
	}
	return nil
}

// ValidateHealthCheck checks one seed-002 check under field.
func ValidateHealthCheck(field string, h *HealthCheck, hasPorts bool, errs *Errors) {
	if h == nil {
		return
	}
	switch h.Type {
	case CheckPort, CheckHTTP:
		if !hasPorts {
			errs.Add(field+".type", "a %s check needs at least one port", h.Type)
		}
	case CheckProcess:
	default:
		errs.Add(field+".type", "must be one of port, process, http")
	}
	if h.Data.Timeout < 0 {
		errs.Add(field+".data.timeout", "must be >= 0")
	}
	if h.Data.InvocationTimeout < 0 {
		errs.Add(field+".data.invocation_timeout", "must be >= 0")
	}
	if h.Data.Interval < 0 {
		errs.Add(field+".data.interval", "must be >= 0")
	}
	if h.Type == CheckHTTP && h.Data.Endpoint != "" && !strings.HasPrefix(h.Data.Endpoint, "/") {
		errs.Add(field+".data.endpoint", "must begin with /")
	}
}

// ValidateResources checks resource fields under field (e.g. "resources").
func ValidateResources(field string, r Resources, errs *Errors) {
	if r.VCPUs < 0 || r.VCPUs > 256 {
		errs.Add(field+".vcpus", "must be > 0 and <= 256")
	}
	if r.MemoryMB < 0 || r.MemoryMB > 1<<20 {
		errs.Add(field+".memory_mb", "must be >= 1 and <= 1048576")
	}
	if r.DiskMB < 0 || r.DiskMB > 1<<24 {
		errs.Add(field+".disk_mb", "must be >= 1 and <= 16777216")
	}
}

// ValidateEnv checks environment variable names and values under field.
func ValidateEnv(field string, env map[string]string, errs *Errors) {
	for k, v := range env {
		if !envNameRe.MatchString(k) {
			errs.Add(field+"."+k, "must be a valid environment variable name")
		}
		if strings.Contains(v, "\x00") {
			errs.Add(field+"."+k, "must not contain NUL")
		}
	}
}

// Validate checks a build as submitted (before Seal). It returns Errors.
func (b *Build) Validate() error {
	var errs Errors
	if len(b.StartCmd) == 0 {
		errs.Add("start_cmd", "is required: a non-empty argv array")
	}
	for i, a := range b.StartCmd {
		if i == 0 && a == "" {
			errs.Add("start_cmd", "argv[0] must not be empty")
		}
		if strings.Contains(a, "\x00") {
			errs.Add("start_cmd", "must not contain NUL")
		}
	}
	ValidateEnv("env", b.Env, &errs)
	if b.Workdir != "" {
		if err := ValidateRelPath(b.Workdir); err != nil {
			errs.Add("workdir", "%v", err)
		}
	}
	for p := range b.Files {
		if err := ValidateRelPath(p); err != nil {
			errs.Add("files."+p, "%v", err)
		}
	}
	seen := map[string]bool{}
	if len(b.Ports) > 16 {
		errs.Add("ports", "at most 16 ports")
	}
	for i, p := range b.Ports {
		f := fmt.Sprintf("ports[%d].name", i)
		if !portNameRe.MatchString(p.Name) {
			errs.Add(f, "must match [a-z][a-z0-9_]{0,14}")
		} else if seen[p.Name] {
			errs.Add(f, "duplicate port name %q", p.Name)
		}
		seen[p.Name] = true
	}
	ValidateHealthCheck("health_check", b.HealthCheck, len(b.Ports) > 0, &errs)
	ValidateHealthCheck("readiness_health_check", b.ReadinessHealthCheck, len(b.Ports) > 0, &errs)
	ValidateResources("resources", b.Resources, &errs)
	for i, t := range b.Tags {
		if err := ValidateLabelKey(t); err != nil {
			errs.Add(fmt.Sprintf("tags[%d]", i), "%v", err)
		}
	}
	return errs.Err()
}

// ValidateTemplateName checks a template name: the label-key rule.
func ValidateTemplateName(name string) error { return ValidateLabelKey(name) }

// TemplateRef is a parsed reference: name, name:tag or name@tb_….
type TemplateRef struct {
	Name    string
	Tag     string // "latest" when neither tag nor build is given
	BuildID string
	// ExplicitTag is true when the ref spelled a tag (name:tag).
	ExplicitTag bool
}

// ParseTemplateRef parses name, name:tag or name@tb_….
func ParseTemplateRef(ref string) (TemplateRef, error) {
	var r TemplateRef
	switch {
	case strings.Contains(ref, "@"):
		name, id, _ := strings.Cut(ref, "@")
		if !strings.HasPrefix(id, PrefixBuild) || len(id) <= len(PrefixBuild) {
			return r, fmt.Errorf("build id in %q must begin with %s", ref, PrefixBuild)
		}
		r.Name, r.BuildID = name, id
	case strings.Contains(ref, ":"):
		name, tag, _ := strings.Cut(ref, ":")
		if err := ValidateLabelKey(tag); err != nil {
			return r, fmt.Errorf("tag in %q: %v", ref, err)
		}
		r.Name, r.Tag, r.ExplicitTag = name, tag, true
	default:
		r.Name, r.Tag = ref, TagLatest
	}
	if err := ValidateTemplateName(r.Name); err != nil {
		return r, fmt.Errorf("template name in %q: %v", ref, err)
	}
	return r, nil
}

func (r TemplateRef) String() string {
	if r.BuildID != "" {
		return r.Name + "@" + r.BuildID
	}
	return r.Name + ":" + r.Tag
}

// SortedKeys returns the keys of m in order.
func SortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
