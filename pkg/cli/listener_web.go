package cli

import (
	"strconv"
	"strings"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// webFlags are a listener's gRPC-Web and CORS settings.
type webFlags struct {
	protocols            string
	origins              []string
	allowHeaders, expose []string
	maxAge               state.Duration
	credentials          bool
}

func (wf *webFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&wf.protocols, "web-protocols", "", "let browsers call the gRPC servers: "+state.WebProtocolGRPCWeb+" (binary and text), "+state.WebProtocolConnect+" (Connect's protocol, binary) or both, comma-separated; none turns it off; HTTPS listeners of gRPC groups only")
	fs.StringArrayVar(&wf.origins, "cors-allow-origin", nil, "a page allowed to call, as its origin: https://app.example.com, https://*.example.com or * (repeatable; replaces the list)")
	fs.StringArrayVar(&wf.allowHeaders, "cors-allow-header", nil, "a request header pages may send beyond gRPC-Web's own, such as authorization (repeatable; replaces the list)")
	fs.StringArrayVar(&wf.expose, "cors-expose-header", nil, "a response header pages may read; the gRPC status headers and those of each response are exposed anyway (repeatable; replaces the list)")
	fs.Var(durationValue{&wf.maxAge}, "cors-max-age", "how long browsers may keep a preflight's answer, up to 24h (Chromium keeps it at most 2h); 0 leaves it to the browser")
	fs.BoolVar(&wf.credentials, "cors-allow-credentials", false, "let pages send cookies and HTTP authentication (not with --cors-allow-origin '*')")
	_ = cmd.RegisterFlagCompletionFunc("web-protocols", fixedCompletion(state.WebProtocolGRPCWeb, state.WebProtocolConnect, state.WebProtocolGRPCWeb+","+state.WebProtocolConnect, "none"))
}

var corsFlags = []string{"cors-allow-origin", "cors-allow-header", "cors-expose-header", "cors-max-age", "cors-allow-credentials"}

// apply writes the web flags the user set onto l. Turning web protocols off drops CORS too.
func (wf *webFlags) apply(fs *pflag.FlagSet, l *state.Listener) error {
	if fs.Changed("web-protocols") {
		switch p := strings.TrimSpace(wf.protocols); p {
		case "none", "":
			for _, f := range corsFlags {
				if fs.Changed(f) {
					return usageErrorf("--web-protocols %s turns gRPC-Web off: give it without --%s", wf.protocols, f)
				}
			}
			l.WebProtocols, l.CORS = nil, nil
			return nil
		default:
			l.WebProtocols = nil
			for v := range strings.SplitSeq(p, ",") {
				l.WebProtocols = append(l.WebProtocols, strings.ToLower(strings.TrimSpace(v)))
			}
		}
	}
	changed := ""
	for _, f := range corsFlags {
		if fs.Changed(f) {
			changed = f
		}
	}
	if changed == "" {
		return nil
	}
	if len(l.WebProtocols) == 0 {
		return usageErrorf("--%s applies to gRPC-Web calls: turn them on with --web-protocols %s", changed, state.WebProtocolGRPCWeb)
	}
	c := state.CORS{}
	if l.CORS != nil {
		c = *l.CORS
	}
	lower := func(vs []string) []string {
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = strings.ToLower(strings.TrimSpace(v))
		}
		return out
	}
	if fs.Changed("cors-allow-origin") {
		c.AllowOrigins = lower(wf.origins)
	}
	if fs.Changed("cors-allow-header") {
		c.AllowHeaders = lower(wf.allowHeaders)
	}
	if fs.Changed("cors-expose-header") {
		c.ExposeHeaders = lower(wf.expose)
	}
	setIfChanged(fs, "cors-max-age", &c.MaxAge, wf.maxAge)
	setIfChanged(fs, "cors-allow-credentials", &c.AllowCredentials, wf.credentials)
	l.CORS = &c
	return nil
}

// webRows describe a listener's gRPC-Web setting for listener get.
func webRows(l state.Listener) details {
	if len(l.WebProtocols) == 0 {
		return details{{"Web protocols", "-"}}
	}
	rows := details{{"Web protocols", strings.Join(l.WebProtocols, ", ")}}
	c := l.CORS
	if c == nil {
		c = &state.CORS{}
	}
	origins := "- (only clients that are not pages)"
	if len(c.AllowOrigins) > 0 {
		origins = strings.Join(c.AllowOrigins, ", ")
	}
	rows = append(rows, [2]string{"CORS origins", origins},
		[2]string{"CORS allowed headers", orDash(strings.Join(c.AllowHeaders, ", "))},
		[2]string{"CORS exposed headers", orDash(strings.Join(c.ExposeHeaders, ", "))},
		[2]string{"CORS credentials", strconv.FormatBool(c.AllowCredentials)})
	if c.MaxAge > 0 {
		rows = append(rows, [2]string{"CORS max age", c.MaxAge.String()})
	}
	return rows
}
