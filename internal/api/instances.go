package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/standbyhq/standby"
)

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	f := standby.InstanceFilter{
		ProjectID: c.project,
		PoolID:    r.PathValue("id"),
		Page:      q.page(),
		States:    q.states(standby.InstanceWarming, standby.InstanceReady, standby.InstanceClaimed, standby.InstanceDraining, standby.InstanceFailed),
	}
	if err := q.err(); err != nil {
		return err
	}
	if _, err := s.findPool(r.Context(), c, f.PoolID); err != nil {
		return err
	}
	items, next, err := s.store.FindInstances(r.Context(), f)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

// findInstance returns an instance of the pool in the path, in the caller's
// project (404 otherwise).
func (s *Server) findInstance(ctx context.Context, c *caller, poolID, id string) (*standby.Instance, error) {
	inst, err := s.store.FindInstance(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.owns(inst.ProjectID) || inst.PoolID != poolID {
		return nil, standby.Errorf(standby.ENotFound, "instance %s not found in warm pool %s", id, poolID)
	}
	return inst, nil
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request, c *caller) error {
	inst, err := s.findInstance(r.Context(), c, r.PathValue("id"), r.PathValue("iid"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, inst)
	return nil
}

func (s *Server) putInstanceKV(k kv) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *caller) error {
		poolID, id := r.PathValue("id"), r.PathValue("iid")
		if _, err := s.findInstance(r.Context(), c, poolID, id); err != nil {
			return err
		}
		key, value, err := k.decodePut(r)
		if err != nil {
			return err
		}
		inst, err := s.store.UpdateInstance(r.Context(), id, func(i *standby.Instance) error {
			return k.set(k.pick(&i.Labels, &i.Annotations), key, value)
		})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, inst)
		return nil
	}
}

func (s *Server) deleteInstanceKV(k kv) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, c *caller) error {
		poolID, id, key := r.PathValue("id"), r.PathValue("iid"), r.PathValue("key")
		inst, err := s.findInstance(r.Context(), c, poolID, id)
		if err != nil {
			return err
		}
		if _, ok := (*k.pick(&inst.Labels, &inst.Annotations))[key]; ok {
			_, err = s.store.UpdateInstance(r.Context(), id, func(i *standby.Instance) error {
				delete(*k.pick(&i.Labels, &i.Annotations), key)
				return nil
			})
			if err != nil {
				return err
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// deleteInstance stops an unclaimed instance (the pool replaces it); a
// claimed one needs force_delete=true, which stops its sandbox.
func (s *Server) deleteInstance(w http.ResponseWriter, r *http.Request, c *caller) error {
	poolID, id := r.PathValue("id"), r.PathValue("iid")
	q := newQuery(r)
	force := q.boolean("force_delete")
	if err := q.err(); err != nil {
		return err
	}
	if _, err := s.findInstance(r.Context(), c, poolID, id); err != nil {
		return err
	}
	now := s.clock.Now()
	var sandboxID string
	_, err := s.store.UpdateInstance(r.Context(), id, func(i *standby.Instance) error {
		switch i.State {
		case standby.InstanceWarming, standby.InstanceReady:
			i.State, i.Reason, i.EndedAt = standby.InstanceDraining, "deleted", &now
			return nil
		case standby.InstanceClaimed:
			if !force {
				return standby.Errorf(standby.EConflict, "instance %s is claimed by a sandbox; use force_delete=true to stop it", id)
			}
			if i.SandboxID != nil {
				sandboxID = *i.SandboxID
			}
			return errNoop
		default: // already draining or failed
			return errNoop
		}
	})
	if err != nil && !errors.Is(err, errNoop) {
		return err
	}
	if sandboxID != "" {
		if err := s.stopSandbox(r.Context(), nil, sandboxID); err != nil && !errors.Is(err, errNoop) {
			return err
		}
	}
	s.ctrl.WakePool(poolID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
