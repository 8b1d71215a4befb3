package api

import (
	"context"
	"io"
	"net/http"

	"github.com/standbyhq/standby"
)

// maxFileBytes bounds a file PUT into a sandbox; the sandbox's disk_mb
// bounds it further when isolation is on.
const maxFileBytes = 256 << 20

// runningSandbox finds the caller's sandbox and the agent of its host;
// conflict unless it is running (exec, files and stats need its process).
func (s *Server) runningSandbox(ctx context.Context, c *caller, id string) (*standby.Sandbox, standby.Agent, error) {
	sb, agent, err := s.sandboxAgent(ctx, c, id)
	if err != nil {
		return nil, nil, err
	}
	if sb.State != standby.SandboxRunning {
		return nil, nil, standby.Errorf(standby.EConflict, "sandbox %s is %s, not running", sb.ID, sb.State)
	}
	return sb, agent, nil
}

func (s *Server) sandboxAgent(ctx context.Context, c *caller, id string) (*standby.Sandbox, standby.Agent, error) {
	sb, err := s.findSandbox(ctx, c, id)
	if err != nil {
		return nil, nil, err
	}
	agent, ok := s.ctrl.Agent(sb.HostID)
	if !ok {
		return nil, nil, standby.Errorf(standby.EUnavailable, "the agent of host %s is not connected", sb.HostID)
	}
	return sb, agent, nil
}

func (s *Server) sandboxExec(w http.ResponseWriter, r *http.Request, c *caller) error {
	sb, agent, err := s.runningSandbox(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	o, err := decodeBody(r)
	if err != nil {
		return err
	}
	var req standby.ExecRequest
	if !get(o, "cmd", &req.Cmd) && !o.has("cmd") {
		o.add("cmd", "is required")
	}
	get(o, "env", &req.Env)
	get(o, "cwd", &req.Cwd)
	get(o, "stdin", &req.Stdin)
	get(o, "timeout_ms", &req.TimeoutMS)
	o.finish()
	if err := combine(*o.errs, nil); err != nil {
		return err
	}
	res, err := agent.Exec(r.Context(), sb.InstanceID, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// filePath is the ?path= of the files endpoints.
func filePath(r *http.Request, name string) (string, error) {
	p := r.URL.Query().Get(name)
	if p == "" {
		return "", standby.FieldError(name, "is required")
	}
	if err := standby.ValidateRelPath(p); err != nil {
		return "", standby.FieldError(name, "%v", err)
	}
	return p, nil
}

func (s *Server) putSandboxFile(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := filePath(r, "path")
	if err != nil {
		return err
	}
	sb, agent, err := s.runningSandbox(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	body := http.MaxBytesReader(w, r.Body, maxFileBytes)
	if err := agent.WriteFile(r.Context(), sb.InstanceID, p, body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) getSandboxFile(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := filePath(r, "path")
	if err != nil {
		return err
	}
	sb, agent, err := s.runningSandbox(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeBytes(w, func(w io.Writer) error { return agent.ReadFile(r.Context(), sb.InstanceID, p, w) })
}

// writeBytes streams a file from the agent as application/octet-stream;
// an error before the first byte is still a proper error response.
func writeBytes(w http.ResponseWriter, copyTo func(io.Writer) error) error {
	hw := &lazyHeader{w: w}
	if err := copyTo(hw); err != nil && !hw.started {
		return err
	}
	if !hw.started {
		hw.start()
	}
	return nil
}

// lazyHeader writes the 200 and its headers at the first byte.
type lazyHeader struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyHeader) start() {
	l.started = true
	l.w.Header().Set("Content-Type", "application/octet-stream")
	l.w.Header().Set("X-Content-Type-Options", "nosniff")
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyHeader) Write(b []byte) (int, error) {
	if !l.started {
		l.start()
	}
	return l.w.Write(b)
}

func (s *Server) listArtefacts(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := newQuery(r)
	page := q.page()
	if err := q.err(); err != nil {
		return err
	}
	sb, agent, err := s.sandboxAgent(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	items, next, err := agent.Artefacts(r.Context(), sb.InstanceID, page)
	if err != nil {
		return err
	}
	writeList(w, items, next)
	return nil
}

func (s *Server) artefactContent(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := filePath(r, "file_path")
	if err != nil {
		return err
	}
	sb, agent, err := s.sandboxAgent(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeBytes(w, func(w io.Writer) error { return agent.ArtefactContent(r.Context(), sb.InstanceID, p, w) })
}

func (s *Server) sandboxStats(w http.ResponseWriter, r *http.Request, c *caller) error {
	sb, agent, err := s.runningSandbox(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	st, err := agent.Stats(r.Context(), sb.InstanceID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
