package api

import "github.com/standbyhq/standby"

// routeDoc describes a route's request and response for /openapi.json.
type routeDoc struct {
	body   any  // request body (a value of the request type), nil for none
	resp   any  // response body (a value of the response type), nil for none
	status int  // success status
	list   bool // the response is a page of resp
	labels bool // takes ?label=k=v filters
	text   bool // the response is text/plain
	binary bool // the request body (if any) and the response are raw bytes
	query  []queryParam
}

// queryParam is a documented query parameter.
type queryParam struct {
	name, typ, description string
}

var (
	qState       = queryParam{"state", "string", "Filter by state (repeatable)."}
	qForceDelete = queryParam{"force_delete", "boolean", "Also stop what is claimed or running."}
	qFilePath    = queryParam{"path", "string", "Path relative to the sandbox root; may not leave it."}
)

// routeTable lists every route of the API. The mux, /openapi.json and the
// route-walk test all read it.
func (s *Server) routeTable() []route {
	pool := standby.WarmPool{}
	inst := standby.Instance{}
	sb := standby.Sandbox{}
	labelKV, annKV := kv{}, kv{annotation: true}
	return []route{
		{method: "GET", pattern: "/healthz", access: public, summary: "Liveness: the process is up",
			handler: s.health, doc: routeDoc{status: 200, resp: map[string]string{}}},
		{method: "GET", pattern: "/readyz", access: public, summary: "Readiness: the server can take traffic",
			handler: s.readyz, doc: routeDoc{status: 200, resp: map[string]string{}}},
		{method: "GET", pattern: "/openapi.json", access: public, summary: "This OpenAPI document",
			handler: s.openapi, doc: routeDoc{status: 200, resp: map[string]any{}}},

		{method: "GET", pattern: "/v1/whoami", access: readRole, summary: "The calling key, its project and role (an authenticated no-op)",
			handler: s.whoami, doc: routeDoc{status: 200, resp: whoami{}}},

		// Projects and keys (SPEC §2).
		{method: "POST", pattern: "/v1/projects", access: adminRole, summary: "Create a project (with the built-in templates)",
			handler: s.createProject, doc: routeDoc{status: 201, body: projectRequest{}, resp: standby.Project{}}},
		{method: "GET", pattern: "/v1/projects", access: readRole, summary: "List projects (non-admin keys see their own)",
			handler: s.listProjects, doc: routeDoc{status: 200, resp: standby.Project{}, list: true}},
		{method: "GET", pattern: "/v1/projects/{id}", access: readRole, summary: "Get a project",
			handler: s.getProject, doc: routeDoc{status: 200, resp: standby.Project{}}},
		{method: "PATCH", pattern: "/v1/projects/{id}", access: adminRole, summary: "Update a project's name or quotas (merge patch)",
			handler: s.patchProject, doc: routeDoc{status: 200, body: projectRequest{}, resp: standby.Project{}}},
		{method: "POST", pattern: "/v1/projects/{id}/api-keys", access: adminRole, summary: "Create an API key; the secret is shown once",
			handler: s.createAPIKey, doc: routeDoc{status: 201, body: apiKeyRequest{}, resp: standby.APIKey{}}},
		{method: "GET", pattern: "/v1/projects/{id}/api-keys", access: adminRole, summary: "List a project's API keys",
			handler: s.listAPIKeys, doc: routeDoc{status: 200, resp: standby.APIKey{}, list: true,
				query: []queryParam{{"include_revoked", "boolean", "Also list revoked keys."}}}},
		{method: "DELETE", pattern: "/v1/api-keys/{id}", access: adminRole, summary: "Revoke an API key at once",
			handler: s.revokeAPIKey, doc: routeDoc{status: 204}},

		// Templates and builds (SPEC §3).
		{method: "POST", pattern: "/v1/templates", access: writeRole, summary: "Create a template",
			handler: s.createTemplate, doc: routeDoc{status: 201, body: templateRequest{}, resp: standby.Template{}}},
		{method: "GET", pattern: "/v1/templates", access: readRole, summary: "List templates",
			handler: s.listTemplates, doc: routeDoc{status: 200, resp: standby.Template{}, list: true, labels: true}},
		{method: "GET", pattern: "/v1/templates/{name}", access: readRole, summary: "Get a template with its tags",
			handler: s.getTemplate, doc: routeDoc{status: 200, resp: standby.Template{}}},
		{method: "DELETE", pattern: "/v1/templates/{name}", access: writeRole, summary: "Delete a template (409 while in use)",
			handler: s.deleteTemplate, doc: routeDoc{status: 204}},
		{method: "GET", pattern: "/v1/templates/{name}/builds", access: readRole, summary: "List a template's builds, newest first",
			handler: s.listBuilds, doc: routeDoc{status: 200, resp: standby.Build{}, list: true}},
		{method: "POST", pattern: "/v1/templates/{name}/builds", access: writeRole, summary: "Create an immutable build (moves latest and tags)",
			handler: s.createBuild, doc: routeDoc{status: 201, body: buildRequest{}, resp: standby.Build{}}},
		{method: "GET", pattern: "/v1/templates/{name}/builds/{id}", access: readRole, summary: "Get a build",
			handler: s.getBuild, doc: routeDoc{status: 200, resp: standby.Build{}}},
		{method: "PUT", pattern: "/v1/templates/{name}/tags/{tag}", access: writeRole, summary: "Point a tag at a build; pools tracking it roll",
			handler: s.setTag, doc: routeDoc{status: 200, body: tagRequest{}, resp: standby.Build{}}},

		// Template warm pools (SPEC §4, seed 000).
		{method: "POST", pattern: "/v1/template-warm-pools", access: writeRole, summary: "Create a template warm pool",
			handler: s.createPool, doc: routeDoc{status: 201, body: poolRequest{}, resp: pool}},
		{method: "GET", pattern: "/v1/template-warm-pools", access: readRole, summary: "List warm pools (deleted ones only with state=deleted)",
			handler: s.listPools, doc: routeDoc{status: 200, resp: pool, list: true, labels: true, query: []queryParam{qState}}},
		{method: "GET", pattern: "/v1/template-warm-pools/{id}", access: readRole, summary: "Get a warm pool (deleted ones too)",
			handler: s.getPool, doc: routeDoc{status: 200, resp: pool}},
		{method: "PATCH", pattern: "/v1/template-warm-pools/{id}", access: writeRole, summary: "Update a warm pool (merge patch)",
			handler: s.patchPool, doc: routeDoc{status: 200, body: poolRequest{}, resp: pool}},
		{method: "DELETE", pattern: "/v1/template-warm-pools/{id}", access: writeRole, summary: "Delete a warm pool",
			handler: s.deletePool, doc: routeDoc{status: 204, query: []queryParam{qForceDelete}}},
		{method: "GET", pattern: "/v1/template-warm-pools/{id}/status", access: readRole, summary: "A warm pool's status and rollout",
			handler: s.getPoolStatus, doc: routeDoc{status: 200, resp: poolStatus{}}},
		{method: "POST", pattern: "/v1/template-warm-pools/{id}/enable", access: writeRole, summary: "Enable a warm pool",
			handler: s.poolAction(enablePool), doc: routeDoc{status: 200, resp: pool}},
		{method: "POST", pattern: "/v1/template-warm-pools/{id}/disable", access: writeRole, summary: "Disable a warm pool (ready instances stopped)",
			handler: s.poolAction(disablePool), doc: routeDoc{status: 200, resp: pool}},
		{method: "POST", pattern: "/v1/template-warm-pools/{id}/drain", access: writeRole, summary: "Drain a warm pool",
			handler: s.poolAction(drainPool), doc: routeDoc{status: 200, resp: pool}},
		{method: "POST", pattern: "/v1/template-warm-pools/{id}/reconcile", access: writeRole, summary: "Make the controller look at a pool now",
			handler: s.reconcilePool, doc: routeDoc{status: 200, resp: pool}},
		{method: "GET", pattern: "/v1/template-warm-pools/{id}/instances", access: readRole, summary: "List a pool's instances",
			handler: s.listInstances, doc: routeDoc{status: 200, resp: inst, list: true, query: []queryParam{qState}}},
		{method: "GET", pattern: "/v1/template-warm-pools/{id}/instances/{iid}", access: readRole, summary: "Get an instance",
			handler: s.getInstance, doc: routeDoc{status: 200, resp: inst}},
		{method: "DELETE", pattern: "/v1/template-warm-pools/{id}/instances/{iid}", access: writeRole, summary: "Stop an instance (claimed ones need force_delete)",
			handler: s.deleteInstance, doc: routeDoc{status: 204, query: []queryParam{qForceDelete}}},
		{method: "PUT", pattern: "/v1/template-warm-pools/{id}/instances/{iid}/labels/{key}", access: writeRole, summary: "Set an instance label",
			handler: s.putInstanceKV(labelKV), doc: routeDoc{status: 200, body: valueRequest{}, resp: inst}},
		{method: "DELETE", pattern: "/v1/template-warm-pools/{id}/instances/{iid}/labels/{key}", access: writeRole, summary: "Remove an instance label",
			handler: s.deleteInstanceKV(labelKV), doc: routeDoc{status: 204}},
		{method: "PUT", pattern: "/v1/template-warm-pools/{id}/instances/{iid}/annotations/{key}", access: writeRole, summary: "Set an instance annotation",
			handler: s.putInstanceKV(annKV), doc: routeDoc{status: 200, body: valueRequest{}, resp: inst}},
		{method: "DELETE", pattern: "/v1/template-warm-pools/{id}/instances/{iid}/annotations/{key}", access: writeRole, summary: "Remove an instance annotation",
			handler: s.deleteInstanceKV(annKV), doc: routeDoc{status: 204}},

		// Sandboxes (SPEC §5).
		{method: "POST", pattern: "/v1/sandboxes", access: writeRole, summary: "Create a sandbox: warm checkout or cold start",
			handler: s.createSandbox, doc: routeDoc{status: 201, body: sandboxRequest{}, resp: sb}},
		{method: "GET", pattern: "/v1/sandboxes", access: readRole, summary: "List sandboxes",
			handler: s.listSandboxes, doc: routeDoc{status: 200, resp: sb, list: true, labels: true, query: []queryParam{
				qState, {"template", "string", "Filter by template name."}, {"warm_pool_id", "string", "Filter by warm pool."}}}},
		{method: "GET", pattern: "/v1/sandboxes/{id}", access: readRole, summary: "Get a sandbox",
			handler: s.getSandbox, doc: routeDoc{status: 200, resp: sb}},
		{method: "DELETE", pattern: "/v1/sandboxes/{id}", access: writeRole, summary: "Stop a sandbox",
			handler: s.deleteSandbox, doc: routeDoc{status: 204}},
		{method: "POST", pattern: "/v1/sandboxes/{id}/timeout", access: writeRole, summary: "Expire a sandbox timeout_ms from now",
			handler: s.setSandboxTimeout, doc: routeDoc{status: 200, body: timeoutRequest{}, resp: sb}},
		{method: "PUT", pattern: "/v1/sandboxes/{id}/labels/{key}", access: writeRole, summary: "Set a sandbox label",
			handler: s.putSandboxKV(labelKV), doc: routeDoc{status: 200, body: valueRequest{}, resp: sb}},
		{method: "DELETE", pattern: "/v1/sandboxes/{id}/labels/{key}", access: writeRole, summary: "Remove a sandbox label",
			handler: s.deleteSandboxKV(labelKV), doc: routeDoc{status: 204}},
		{method: "PUT", pattern: "/v1/sandboxes/{id}/annotations/{key}", access: writeRole, summary: "Set a sandbox annotation",
			handler: s.putSandboxKV(annKV), doc: routeDoc{status: 200, body: valueRequest{}, resp: sb}},
		{method: "DELETE", pattern: "/v1/sandboxes/{id}/annotations/{key}", access: writeRole, summary: "Remove a sandbox annotation",
			handler: s.deleteSandboxKV(annKV), doc: routeDoc{status: 204}},
		{method: "GET", pattern: "/v1/sandboxes/{id}/logs", access: readRole, summary: "A sandbox's stdout or stderr",
			handler: s.sandboxLogs, doc: routeDoc{status: 200, text: true, query: []queryParam{
				{"stream", "string", "stdout (default) or stderr."},
				{"tail", "integer", "Only the last N lines."},
				{"follow", "boolean", "Keep streaming new output."}}}},

		// Inside a sandbox (SPEC §5): exec, files, artefacts, stats.
		{method: "POST", pattern: "/v1/sandboxes/{id}/exec", access: writeRole, summary: "Run a command inside a sandbox and wait for it",
			handler: s.sandboxExec, doc: routeDoc{status: 200, body: standby.ExecRequest{}, resp: standby.ExecResult{}}},
		{method: "PUT", pattern: "/v1/sandboxes/{id}/files", access: writeRole, summary: "Write a file inside a sandbox's root (body: the content)",
			handler: s.putSandboxFile, doc: routeDoc{status: 204, binary: true, query: []queryParam{qFilePath}}},
		{method: "GET", pattern: "/v1/sandboxes/{id}/files", access: readRole, summary: "Read a file inside a sandbox's root",
			handler: s.getSandboxFile, doc: routeDoc{status: 200, binary: true, query: []queryParam{qFilePath}}},
		{method: "GET", pattern: "/v1/sandboxes/{id}/artefacts", access: readRole, summary: "List a sandbox's artefacts (kept 24 h after it stops)",
			handler: s.listArtefacts, doc: routeDoc{status: 200, resp: standby.Artefact{}, list: true}},
		{method: "GET", pattern: "/v1/sandboxes/{id}/artefacts/content", access: readRole, summary: "Read one artefact",
			handler: s.artefactContent, doc: routeDoc{status: 200, binary: true, query: []queryParam{
				{"file_path", "string", "The artefact's path, relative to $STANDBY_ARTEFACTS_DIR."}}}},
		{method: "GET", pattern: "/v1/sandboxes/{id}/stats", access: readRole, summary: "A sandbox's usage and quotas",
			handler: s.sandboxStats, doc: routeDoc{status: 200, resp: standby.InstanceStats{}}},

		// Hosts (SPEC §7).
		{method: "GET", pattern: "/v1/hosts", access: readRole, summary: "List hosts",
			handler: s.listHosts, doc: routeDoc{status: 200, resp: standby.Host{}, list: true}},
	}
}
