package cli

import (
	"strconv"
	"strings"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newListenerCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "listener",
		Aliases: []string{"lsn"},
		Short:   "Manage listeners: a port of a load balancer forwarding to a server group",
		Long: `A listener accepts clients on a port of a load balancer and forwards their calls to a server
group. gRPC server groups need an HTTPS listener with HTTP/2 on (the default): clients speak
TLS to the listener and the listener speaks plaintext HTTP/2 (h2c) to the servers.`,
	}
	cmd.AddCommand(newListenerCreateCmd(a), newListenerListCmd(a), newListenerUpdateCmd(a),
		newGetCmd(a, "LISTENER", "Show a listener", "  albctl listener get lsn-0123456789abcdef -o json",
			listenerRefs, (*state.State).Listener, a.printListener),
		newDeleteCmd(a, "LISTENER", "Delete a listener", "  albctl listener delete lsn-0123456789abcdef",
			listenerRefs, (*state.State).DeleteListener, a.printListener),
		newListenerCertsCmd(a, "add-certs", "Add certificates that the listener serves by SNI",
			"  albctl listener add-certs lsn-0123456789abcdef --cert api-example --cert www-example",
			func(l *state.Listener, ref string) error {
				l.AdditionalCertificateIDs = append(l.AdditionalCertificateIDs, ref)
				return nil
			}),
		newListenerCertsCmd(a, "remove-certs", "Remove additional certificates from a listener",
			"  albctl listener remove-certs lsn-0123456789abcdef --cert www-example",
			func(l *state.Listener, ref string) error {
				for i, id := range l.AdditionalCertificateIDs {
					if id == ref {
						l.AdditionalCertificateIDs = append(l.AdditionalCertificateIDs[:i], l.AdditionalCertificateIDs[i+1:]...)
						return nil
					}
				}
				return &state.NotFoundError{Kind: "certificate", Ref: ref, In: "the SNI certificates of listener " + l.ID}
			}),
	)
	return cmd
}

// listenerFlags are the settings create and update share.
type listenerFlags struct {
	lb, protocol, cert, serverGroup string
	port                            int
	http2                           bool
	idleTimeout, requestTimeout     state.Duration
	clientAuth                      clientAuthFlags
	acl                             aclFlags
	web                             webFlags
	tlsPolicy                       string
}

func (lf *listenerFlags) register(a *app, cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&lf.protocol, "protocol", state.ProtocolHTTPS, "HTTPS or HTTP")
	fs.IntVar(&lf.port, "port", 0, "port, 1-65535, once per load balancer address")
	fs.StringVar(&lf.cert, "cert", "", "certificate for HTTPS, by ID or name")
	fs.StringVar(&lf.serverGroup, "server-group", "", "server group to forward to, by ID or name")
	fs.BoolVar(&lf.http2, "http2", true, "HTTP/2 to clients (HTTPS only; needed for gRPC)")
	lf.idleTimeout, lf.requestTimeout = state.Duration(state.DefaultIdleTimeout), state.Duration(state.DefaultRequestTimeout)
	fs.Var(durationValue{&lf.idleTimeout}, "idle-timeout", "close client connections idle this long, 1-60s")
	fs.Var(durationValue{&lf.requestTimeout}, "request-timeout", "fail a call whose server has not begun to answer within this time (DEADLINE_EXCEEDED), 1-600s; streams that have begun are not cut")
	fs.StringVar(&lf.tlsPolicy, "tls-policy", "", "TLS security policy (HTTPS only), by name or ID; empty is the default, "+state.DefaultTLSPolicy)
	_ = cmd.RegisterFlagCompletionFunc("tls-policy", a.refCompletion(tlsPolicyRefs))
	_ = cmd.RegisterFlagCompletionFunc("protocol", fixedCompletion(state.ProtocolHTTPS, state.ProtocolHTTP))
	_ = cmd.RegisterFlagCompletionFunc("cert", a.refCompletion(certRefs))
	_ = cmd.RegisterFlagCompletionFunc("server-group", a.refCompletion(sgRefs))
	lf.clientAuth.register(a, cmd, cmd.Name() == "update")
	lf.acl.register(a, cmd)
	lf.web.register(cmd)
}

// apply writes the flags the user set onto l. An HTTP listener has HTTP/2 off unless asked.
func (lf *listenerFlags) apply(fs *pflag.FlagSet, l *state.Listener) error {
	if fs.Changed("protocol") {
		p, err := canonical("--protocol", lf.protocol, state.ProtocolHTTPS, state.ProtocolHTTP)
		if err != nil {
			return err
		}
		l.Protocol = p
		if p == state.ProtocolHTTP && !fs.Changed("http2") {
			l.HTTP2 = false
		}
	}
	setIfChanged(fs, "lb", &l.LBID, lf.lb)
	setIfChanged(fs, "port", &l.Port, lf.port)
	setIfChanged(fs, "cert", &l.CertificateID, lf.cert)
	setIfChanged(fs, "server-group", &l.ServerGroupID, lf.serverGroup)
	setIfChanged(fs, "http2", &l.HTTP2, lf.http2)
	setIfChanged(fs, "idle-timeout", &l.IdleTimeout, lf.idleTimeout)
	setIfChanged(fs, "request-timeout", &l.RequestTimeout, lf.requestTimeout)
	setIfChanged(fs, "tls-policy", &l.TLSPolicy, lf.tlsPolicy)
	if err := lf.acl.apply(fs, l); err != nil {
		return err
	}
	if err := lf.web.apply(fs, l); err != nil {
		return err
	}
	return lf.clientAuth.apply(fs, l)
}

func newListenerCreateCmd(a *app) *cobra.Command {
	var lf listenerFlags
	cmd := &cobra.Command{
		Use:   "create --lb LB --port N --server-group SG [--protocol HTTPS --cert CERT] [flags]",
		Short: "Create a listener",
		Example: `  albctl listener create --lb demo --protocol HTTPS --port 8443 --cert grpc-example --server-group grpc-backends
  albctl listener create --lb demo --protocol HTTP --port 8080 --server-group web --idle-timeout 30s
  albctl listener create --lb demo --port 8443 --cert grpc-example --server-group grpc-backends \
      --web-protocols grpc-web --cors-allow-origin https://app.example.com`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l := state.Listener{
				Protocol: state.ProtocolHTTPS, HTTP2: true, IdleTimeout: lf.idleTimeout, RequestTimeout: lf.requestTimeout,
			}
			if err := lf.apply(cmd.Flags(), &l); err != nil {
				return err
			}
			var created *state.Listener
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				created, err = s.CreateListener(l)
				return err
			})
			if err != nil {
				return err
			}
			return a.printListener(*created)
		},
	}
	cmd.Flags().StringVar(&lf.lb, "lb", "", "load balancer, by ID or name")
	_ = cmd.RegisterFlagCompletionFunc("lb", a.refCompletion(lbRefs))
	lf.register(a, cmd)
	for _, f := range []string{"lb", "port", "server-group"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newListenerUpdateCmd(a *app) *cobra.Command {
	var lf listenerFlags
	cmd := &cobra.Command{
		Use:   "update LISTENER [flags]",
		Short: "Change a listener's settings",
		Example: `  albctl listener update lsn-0123456789abcdef --cert grpc-example-2025
  albctl listener update lsn-0123456789abcdef --request-timeout 300s
  albctl listener update lsn-0123456789abcdef --web-protocols grpc-web --cors-allow-origin 'https://*.example.com'`,
		Args:              needArgs("LISTENER"),
		ValidArgsFunction: argCompletion(a.refCompletion(listenerRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !anyLocalFlag(cmd) {
				return usageErrorf("nothing to change: give at least one setting, such as --cert or --request-timeout")
			}
			var updated *state.Listener
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				updated, err = s.UpdateListener(args[0], func(l *state.Listener) error {
					return lf.apply(cmd.Flags(), l)
				})
				return err
			})
			if err != nil {
				return err
			}
			return a.printListener(*updated)
		},
	}
	lf.register(a, cmd)
	lf.acl.registerClear(cmd)
	return cmd
}

func newListenerListCmd(a *app) *cobra.Command {
	var lbRef string
	cmd := &cobra.Command{
		Use:     "list [--lb LB]",
		Aliases: []string{"ls"},
		Short:   "List listeners",
		Example: "  albctl listener list\n  albctl listener list --lb demo -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			list := s.Listeners
			if lbRef != "" {
				lb, err := s.LoadBalancer(lbRef)
				if err != nil {
					return err
				}
				list = nil
				for _, l := range s.Listeners {
					if l.LBID == lb.ID {
						list = append(list, l)
					}
				}
			}
			if list == nil {
				list = []state.Listener{}
			}
			return a.print(list, func() view {
				t := table{header: []string{"ID", "LB", "PROTOCOL", "PORT", "HTTP2", "CERTIFICATE", "SERVER GROUP", "TLS POLICY"}}
				for _, l := range list {
					t.rows = append(t.rows, listenerRow(s, l))
				}
				return t
			})
		},
	}
	cmd.Flags().StringVar(&lbRef, "lb", "", "only the listeners of this load balancer, by ID or name")
	_ = cmd.RegisterFlagCompletionFunc("lb", a.refCompletion(lbRefs))
	return cmd
}

// listenerRow shows a listener with the names of what it refers to.
func listenerRow(s *state.State, l state.Listener) []string {
	cert := "-"
	if l.CertificateID != "" {
		cert = nameOf(s, l.CertificateID)
	}
	return []string{l.ID, nameOf(s, l.LBID), l.Protocol, strconv.Itoa(l.Port), strconv.FormatBool(l.HTTP2), cert, nameOf(s, l.ServerGroupID),
		listenerTLSPolicy(s, l)}
}

// nameOf returns the name of the resource with the ID, or the ID itself. IDs of different kinds
// never collide, since each kind has its own prefix and no name may start with one.
func nameOf(s *state.State, id string) string {
	if lb, err := s.LoadBalancer(id); err == nil {
		return lb.Name
	}
	if sg, err := s.ServerGroup(id); err == nil {
		return sg.Name
	}
	if c, err := s.Certificate(id); err == nil {
		return c.Name
	}
	return id
}

// newListenerCertsCmd builds add-certs and remove-certs, which differ in what they do with each
// --cert. A listener's default certificate (--cert of create and update) serves clients that
// send no name or one no certificate covers; additional ones are chosen by SNI.
func newListenerCertsCmd(a *app, use, short, example string, change func(l *state.Listener, certID string) error) *cobra.Command {
	var refs []string
	cmd := &cobra.Command{
		Use:               use + " LISTENER --cert CERT [--cert ...]",
		Short:             short,
		Example:           example,
		Args:              needArgs("LISTENER"),
		ValidArgsFunction: argCompletion(a.refCompletion(listenerRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(refs) == 0 {
				return usageErrorf("give at least one --cert")
			}
			var updated *state.Listener
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				updated, err = s.UpdateListener(args[0], func(l *state.Listener) error {
					for _, ref := range refs {
						c, err := s.Certificate(ref)
						if err != nil {
							return err
						}
						if err := change(l, c.ID); err != nil {
							return err
						}
					}
					return nil
				})
				return err
			})
			if err != nil {
				return err
			}
			return a.printListener(*updated)
		},
	}
	cmd.Flags().StringArrayVar(&refs, "cert", nil, "certificate, by ID or name (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("cert", a.refCompletion(certRefs))
	return cmd
}

func (a *app) printListener(l state.Listener) error {
	return a.print(l, func() view {
		cert := l.CertificateID
		if cert == "" {
			cert = "-"
		}
		rows := details{{"ID", l.ID}, {"Load balancer", l.LBID}, {"Protocol", l.Protocol}, {"Port", strconv.Itoa(l.Port)},
			{"HTTP/2", strconv.FormatBool(l.HTTP2)}, {"Certificate", cert}, {"SNI certificates", orDash(strings.Join(l.AdditionalCertificateIDs, ", "))},
			{"Server group", l.ServerGroupID},
			{"ACL type", orDash(l.ACLType)}, {"ACLs", orDash(strings.Join(l.ACLIDs, ", "))},
			{"Idle timeout", l.IdleTimeout.String()}, {"Request timeout", l.RequestTimeout.String()},
			{"TLS policy", listenerTLSPolicy(nil, l)}}
		return append(append(rows, clientAuthRows(l)...), webRows(l)...)
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
