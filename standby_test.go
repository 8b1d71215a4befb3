package standby_test

import (
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/standbyhq/standby"
)

func TestRootImportsOnlyTheStandardLibrary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/standbyhq/standby" {
			t.Errorf("root package depends on %s; it may use only the standard library", p)
		}
	}
}

func TestNewIDSortsByCreation(t *testing.T) {
	ids := make([]string, 0, 50)
	for range 50 {
		ids = append(ids, standby.NewID(standby.PrefixSandbox))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !strings.HasPrefix(id, "sb_") || len(id) != 3+26 {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
	// Ids made in a later millisecond sort after earlier ones: the first
	// nine characters after the prefix are time only (45 bits).
	a := standby.NewID("x_")
	b := standby.NewID("x_")
	for b[:11] == a[:11] {
		b = standby.NewID("x_")
	}
	if !sort.StringsAreSorted([]string{a, b}) {
		t.Fatalf("%s made before %s sorts after it", a, b)
	}
}

func TestLabelRules(t *testing.T) {
	tests := []struct {
		key, value string
		ok         bool
	}{
		{"a", "", true},
		{"team", "blue", true},
		{"a.b-c_d", "x.y-z_0", true},
		{strings.Repeat("k", 59), strings.Repeat("v", 63), true},
		{strings.Repeat("k", 60), "v", false},
		{"k", strings.Repeat("v", 64), false},
		{"", "v", false},
		{"-k", "v", false},
		{"k-", "v", false},
		{"k", "-v", false},
		{"k", "v v", false},
		{"k/v", "v", false},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			var errs standby.Errors
			standby.ValidateLabels("labels", map[string]string{tt.key: tt.value}, &errs)
			if ok := len(errs) == 0; ok != tt.ok {
				t.Fatalf("valid = %v, want %v (%v)", ok, tt.ok, errs)
			}
			if !tt.ok && errs[0].Field != "labels."+tt.key {
				t.Fatalf("field = %q", errs[0].Field)
			}
		})
	}
}

func TestParseTemplateRef(t *testing.T) {
	tests := []struct {
		ref                string
		name, tag, buildID string
		explicit, wantErr  bool
	}{
		{ref: "echo", name: "echo", tag: "latest"},
		{ref: "echo:stable", name: "echo", tag: "stable", explicit: true},
		{ref: "echo@tb_123", name: "echo", buildID: "tb_123"},
		{ref: "echo@123", wantErr: true},
		{ref: "echo:", wantErr: true},
		{ref: "", wantErr: true},
		{ref: "-bad", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			r, err := standby.ParseTemplateRef(tt.ref)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (r.Name != tt.name || r.Tag != tt.tag || r.BuildID != tt.buildID || r.ExplicitTag != tt.explicit) {
				t.Fatalf("got %+v", r)
			}
		})
	}
}

func TestWarmPoolValidateNamesEachField(t *testing.T) {
	valid := func() *standby.WarmPool {
		p := &standby.WarmPool{Name: "p", TemplateRef: "echo", MinReady: 1, MaxReady: 2}
		p.ApplyDefaults()
		return p
	}
	tests := []struct {
		field  string
		mutate func(p *standby.WarmPool)
	}{
		{"name", func(p *standby.WarmPool) { p.Name = "" }},
		{"name", func(p *standby.WarmPool) { p.Name = strings.Repeat("n", 161) }},
		{"template_ref", func(p *standby.WarmPool) { p.TemplateRef = "" }},
		{"template_ref", func(p *standby.WarmPool) { p.TemplateRef = "bad name" }},
		{"min_ready", func(p *standby.WarmPool) { p.MinReady = -1; p.MaxReady = 0 }},
		{"max_ready", func(p *standby.WarmPool) { p.MaxReady = -1 }},
		{"max_ready", func(p *standby.WarmPool) { p.MinReady, p.MaxReady = 3, 2 }},
		{"resources.vcpus", func(p *standby.WarmPool) { p.Resources.VCPUs = -1 }},
		{"resources.memory_mb", func(p *standby.WarmPool) { p.Resources.MemoryMB = -5 }},
		{"checkout_policy", func(p *standby.WarmPool) { p.CheckoutPolicy = "sometimes" }},
		{"idle_timeout_seconds", func(p *standby.WarmPool) { p.IdleTimeoutSeconds = 0 }},
		{"stale_after_seconds", func(p *standby.WarmPool) { p.StaleAfterSeconds = 0 }},
		{"version_policy", func(p *standby.WarmPool) { p.VersionPolicy = "newest" }},
		{"track_tag", func(p *standby.WarmPool) { p.VersionPolicy = standby.PolicyTrackTag }},
		{"template_ref", func(p *standby.WarmPool) {
			p.VersionPolicy, p.TemplateRef, p.TrackTag = standby.PolicyTrackTag, "echo@tb_1", standby.Ptr("stable")
		}},
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid pool: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			p := valid()
			tt.mutate(p)
			errs := standby.ErrorList(p.Validate())
			if len(errs) != 1 || errs[0].Field != tt.field || errs[0].Code != standby.EValidation {
				t.Fatalf("errors = %v, want one on %s", errs, tt.field)
			}
		})
	}
	// track_tag is not needed when template_ref names a tag.
	p := valid()
	p.VersionPolicy, p.TemplateRef = standby.PolicyTrackTag, "echo:stable"
	if err := p.Validate(); err != nil || p.EffectiveTrackTag() != "stable" {
		t.Fatalf("echo:stable under track_tag: %v, tag %q", err, p.EffectiveTrackTag())
	}
}

func TestSetResolvedBuildFillsPrevious(t *testing.T) {
	p := &standby.WarmPool{}
	b1 := &standby.Build{ID: "tb_1", Template: "echo"}
	b1.Seal()
	b2 := &standby.Build{ID: "tb_2", Template: "echo", Env: map[string]string{"V": "2"}}
	b2.Seal()
	if !p.SetResolvedBuild(b1) || p.RolloutGeneration != 1 || p.PreviousResolvedTemplateBuildID != nil {
		t.Fatalf("first resolution: %+v", p)
	}
	if p.SetResolvedBuild(b1) {
		t.Fatal("same build reported as a change")
	}
	if !p.SetResolvedBuild(b2) || p.RolloutGeneration != 2 || *p.PreviousResolvedTemplateBuildID != "tb_1" ||
		*p.PreviousResolvedTemplate != "echo@tb_1" || *p.PreviousRuntimeArtifactID != b1.RuntimeArtifactID {
		t.Fatalf("second resolution: %+v", p)
	}
	if b1.RuntimeArtifactID == b2.RuntimeArtifactID {
		t.Fatal("different env gave the same artifact id")
	}
}

func TestSelectFirstHonoursSelectorOrder(t *testing.T) {
	cands := []map[string]string{{"region": "eu"}, {"region": "us", "gpu": "yes"}}
	sels := []standby.Selector{{Labels: map[string]string{"gpu": "yes"}}, {Labels: map[string]string{"region": "eu"}}}
	si, ci := standby.SelectFirst(sels, len(cands), func(s standby.Selector, j int) bool { return s.Matches(cands[j]) })
	if si != 0 || ci != 1 {
		t.Fatalf("got selector %d candidate %d, want 0 and 1", si, ci)
	}
	si, _ = standby.SelectFirst([]standby.Selector{{Labels: map[string]string{"x": "y"}}}, len(cands), func(s standby.Selector, j int) bool { return s.Matches(cands[j]) })
	if si != -2 {
		t.Fatalf("no match gave selector %d", si)
	}
	if !(standby.Selector{Labels: map[string]string{"a": "2"}}).MatchesOverlay(map[string]string{"a": "1"}, map[string]string{"a": "2"}) {
		t.Fatal("instance label must override pool label")
	}
}

func TestNewIDIsMonotonicWithinAMillisecond(t *testing.T) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = standby.NewID(standby.PrefixWarmPool)
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatal("ids made one after another do not sort in the order they were made")
	}
}
