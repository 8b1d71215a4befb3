package api

import (
	"net/http"
)

// whoami is the body of GET /v1/whoami.
type whoami struct {
	KeyID     string `json:"key_id"`
	ProjectID string `json:"project_id"`
	Role      string `json:"role"`
}

// whoami answers who the caller is after the normal authentication. It does
// nothing else, which makes it the floor `standby bench` measures checkout
// against: an authenticated request on the same server and path.
func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, c *caller) error {
	writeJSON(w, http.StatusOK, whoami{KeyID: c.key.ID, ProjectID: c.project, Role: c.key.Role})
	return nil
}
