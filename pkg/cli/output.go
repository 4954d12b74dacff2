package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// view is the human form of a result.
type view interface {
	render(w io.Writer, terminal bool) error
}

// print writes v as JSON or YAML (its JSON form, so field names are the same in both), or the
// human view.
func (a *app) print(v any, human func() view) error {
	switch a.output {
	case "json":
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.io.Out, "%s\n", data)
		return err
	case "yaml":
		data, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = a.io.Out.Write(data)
		return err
	default:
		return human().render(a.io.Out, isTerminal(a.io.Out))
	}
}

// table is rows with a header. On a terminal the columns are aligned under the header; in a
// pipe the rows are tab-separated without the header, ready for cut and awk.
type table struct {
	header []string
	rows   [][]string
}

func (t table) render(w io.Writer, terminal bool) error {
	if !terminal {
		for _, row := range t.rows {
			if _, err := fmt.Fprintln(w, strings.Join(row, "\t")); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.header, "\t"))
	for _, row := range t.rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// details is one resource as "Field: value" lines.
type details [][2]string

func (d details) render(w io.Writer, terminal bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	for _, kv := range d {
		if kv[0] == "" { // a continuation of the line above
			fmt.Fprintf(tw, "\t%s\n", kv[1])
		} else {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
	}
	return tw.Flush()
}

// views renders several views, one after the other.
type views []view

func (vs views) render(w io.Writer, terminal bool) error {
	for _, v := range vs {
		if err := v.render(w, terminal); err != nil {
			return err
		}
	}
	return nil
}
