package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/standbyhq/standby"
)

func (a *app) out() io.Writer { return a.opts.Stdout }

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.out(), "%s\n", b)
	return err
}

// table writes aligned columns: a header, then one line per row. Empty
// cells print as "-" so columns stay readable.
func (a *app) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(a.out(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			if c == "" {
				c = "-"
			}
			cells[i] = c
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// fields writes "name  value" lines, aligned, for one resource.
func (a *app) fields(kv [][2]string) error {
	tw := tabwriter.NewWriter(a.out(), 0, 4, 2, ' ', 0)
	for _, f := range kv {
		v := f[1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\n", f[0], v)
	}
	return tw.Flush()
}

// show prints v as JSON under --json, else calls text.
func (a *app) show(v any, text func() error) error {
	if a.json {
		return a.printJSON(v)
	}
	return text()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// fmtMap prints k=v pairs in key order.
func fmtMap(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range standby.SortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// fmtPorts prints name:port pairs in name order.
func fmtPorts(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range standby.SortedKeys(m) {
		parts = append(parts, k+":"+strconv.Itoa(m[k]))
	}
	return strings.Join(parts, ",")
}

func fmtResources(r standby.Resources) string {
	return fmt.Sprintf("%g vcpus, %d MB memory, %d MB disk", r.VCPUs, r.MemoryMB, r.DiskMB)
}

// isTerminal reports whether w is a character device, where progress can
// rewrite its line instead of adding one.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
