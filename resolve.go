package standby

import "context"

// ResolveTemplateRef returns the build a ref names in a project: name (the
// build tagged latest), name:tag, or name@tb_…. not_found when the template,
// tag or build does not exist; validation_failed (field "template_ref") when
// the ref is malformed or names a build of another template.
func ResolveTemplateRef(ctx context.Context, s Store, projectID, ref string) (*Build, error) {
	r, err := ParseTemplateRef(ref)
	if err != nil {
		return nil, FieldError("template_ref", "%v", err)
	}
	id := r.BuildID
	if id == "" {
		if id, err = s.FindTag(ctx, projectID, r.Name, r.Tag); err != nil {
			if IsCode(err, ENotFound) {
				return nil, Errorf(ENotFound, "template %q has no tag %q", r.Name, r.Tag)
			}
			return nil, err
		}
	}
	b, err := s.FindBuild(ctx, projectID, id)
	if err != nil {
		return nil, err
	}
	if b.Template != r.Name {
		return nil, FieldError("template_ref", "build %s belongs to template %q, not %q", id, b.Template, r.Name)
	}
	return b, nil
}

// SetResolvedBuild points a pool at build b. When the resolved build
// changes (not on the first resolution), it moves the old one into the
// previous_* fields and bumps rollout_generation. It reports whether
// anything changed.
func (p *WarmPool) SetResolvedBuild(b *Build) bool {
	if p.ResolvedTemplateBuildID != nil && *p.ResolvedTemplateBuildID == b.ID {
		return false
	}
	if p.ResolvedTemplateBuildID != nil {
		p.PreviousResolvedTemplate = Ptr(p.ResolvedTemplate)
		p.PreviousResolvedTemplateBuildID = p.ResolvedTemplateBuildID
		p.PreviousRuntimeArtifactID = p.RuntimeArtifactID
	}
	p.RolloutGeneration++
	p.ResolvedTemplate = b.CanonicalRef
	p.ResolvedTemplateBuildID = Ptr(b.ID)
	p.RuntimeArtifactID = Ptr(b.RuntimeArtifactID)
	p.CompatibilityKey = Ptr(b.CompatibilityKey)
	return true
}
