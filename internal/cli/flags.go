package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/standbyhq/standby"
)

// parseKV turns repeated "k=v" flag values into a map; flag names the flag
// in errors. A nil map is returned for no values.
func parseKV(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flag, v)
		}
		m[k] = val
	}
	return m, nil
}

// parseSelectors turns each --selector value ("k=v,k2=v2", or "" for a
// selector that matches anything) into one selector, in order.
func parseSelectors(vals []string) ([]standby.Selector, error) {
	var out []standby.Selector
	for _, v := range vals {
		sel := standby.Selector{Labels: map[string]string{}}
		for _, pair := range strings.Split(v, ",") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			k, val, ok := strings.Cut(pair, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--selector %q: want key=value[,key=value…]", v)
			}
			sel.Labels[k] = val
		}
		out = append(out, sel)
	}
	return out, nil
}

// parseFiles turns "path=@localfile" (the local file's content) and
// "path=content" into the files map of a build.
func parseFiles(vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		p, content, ok := strings.Cut(v, "=")
		if !ok || p == "" {
			return nil, fmt.Errorf("--file %q: want path=@localfile or path=content", v)
		}
		if local, isFile := strings.CutPrefix(content, "@"); isFile {
			b, err := os.ReadFile(local)
			if err != nil {
				return nil, fmt.Errorf("--file %s: %w", p, err)
			}
			content = string(b)
		}
		m[p] = content
	}
	return m, nil
}

// parseCheck turns "port", "process", "http" or "http:/path" into a
// health check.
func parseCheck(flag, v string) (*standby.HealthCheck, error) {
	typ, endpoint, hasEndpoint := strings.Cut(v, ":")
	switch typ {
	case standby.CheckPort, standby.CheckProcess:
		if hasEndpoint {
			return nil, fmt.Errorf("--%s %q: only http checks take an endpoint", flag, v)
		}
	case standby.CheckHTTP:
	default:
		return nil, fmt.Errorf("--%s %q: want port, process, http or http:/path", flag, v)
	}
	return &standby.HealthCheck{Type: typ, Data: standby.HealthCheckData{Endpoint: endpoint}}, nil
}

// parseSeconds reads a number of seconds ("300") or a duration ("5m").
func parseSeconds(flag, v string) (int, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return n, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d%time.Second != 0 {
		return 0, fmt.Errorf("--%s %q: want seconds (300) or a duration in whole seconds (5m)", flag, v)
	}
	return int(d / time.Second), nil
}

// parseMillis reads milliseconds ("60000") or a duration ("1m").
func parseMillis(what, v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return n, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want milliseconds (60000) or a duration (1m)", what, v)
	}
	return d.Milliseconds(), nil
}

// parseMetadata checks that --metadata is a JSON object, so the mistake is
// named here rather than as a malformed request body.
func parseMetadata(v string) (json.RawMessage, error) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(v), &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("--metadata: want a JSON object, like '{\"k\":\"v\"}'")
	}
	return json.RawMessage(v), nil
}

// resourceFlags are --vcpus, --memory-mb and --disk-mb.
type resourceFlags struct {
	vcpus    float64
	memoryMB int
	diskMB   int
}

func (r *resourceFlags) add(fs *pflag.FlagSet) {
	fs.Float64Var(&r.vcpus, "vcpus", 0, "vCPUs (may be fractional)")
	fs.IntVar(&r.memoryMB, "memory-mb", 0, "memory in MB")
	fs.IntVar(&r.diskMB, "disk-mb", 0, "disk in MB")
}

// changed reports whether any resource flag was given.
func (r *resourceFlags) changed(fs *pflag.FlagSet) bool {
	return fs.Changed("vcpus") || fs.Changed("memory-mb") || fs.Changed("disk-mb")
}

// over returns base with the given flags applied.
func (r *resourceFlags) over(fs *pflag.FlagSet, base standby.Resources) standby.Resources {
	if fs.Changed("vcpus") {
		base.VCPUs = r.vcpus
	}
	if fs.Changed("memory-mb") {
		base.MemoryMB = r.memoryMB
	}
	if fs.Changed("disk-mb") {
		base.DiskMB = r.diskMB
	}
	return base
}
