package cli

import (
	"slices"
	"strings"

	"github.com/albctl/albctl/pkg/state"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newACLCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Manage access control lists: the client addresses a listener admits or refuses",
		Long: `An access control list (ACL) is a set of up to 500 IP addresses and CIDR ranges. A listener
uses up to 3 ACLs, as a white list (--acl-type white: it admits only the clients they list) or
a black list (--acl-type black: it refuses them).

The listener checks the client's address as it sees it, the source of the TCP connection,
when it accepts the connection and before TLS: a refused client's connection is closed at
once, without a byte sent. Behind a NAT or another proxy, that address is the last hop's.

As in the cloud, a white list whose ACLs are empty admits nobody, and an empty black list
admits everybody. A change to an ACL or to a listener's ACLs applies to new connections at
once; connections already admitted are kept until they close.`,
		Example: `  albctl acl create --name office --entry 10.0.0.0/8 --entry '192.168.1.7,description=build server'
  albctl listener update lsn-0123456789abcdef --acl office --acl-type white
  albctl acl add-entries office --entry 2001:db8::/32
  albctl listener update lsn-0123456789abcdef --clear-acls`,
	}
	cmd.AddCommand(newACLCreateCmd(a), newACLListCmd(a),
		newGetCmd(a, "ACL", "Show an ACL and its entries, by ID or name", "  albctl acl get office\n  albctl acl get office -o json",
			aclRefs, (*state.State).ACL, a.printACL),
		newDeleteCmd(a, "ACL", "Delete an ACL that no listener uses", "  albctl acl delete office",
			aclRefs, (*state.State).DeleteACL, a.printACL),
		newACLEntriesCmd(a, "add-entries", "Add entries to an ACL",
			"  albctl acl add-entries office --entry 10.2.0.0/16 --entry '2001:db8::/32,description=office, IPv6'",
			entryHelp+" (repeatable)",
			func(s *state.State, ref string, entries []string) (*state.ACL, error) {
				parsed, err := parseEntries(entries)
				if err != nil {
					return nil, err
				}
				return s.AddACLEntries(ref, parsed)
			}),
		newACLEntriesCmd(a, "remove-entries", "Remove entries from an ACL",
			"  albctl acl remove-entries office --entry 10.2.0.0/16 --entry 2001:db8::/32",
			"entry to remove, by its CIDR (repeatable)",
			(*state.State).RemoveACLEntries),
	)
	return cmd
}

const entryHelp = "entry CIDR[,description=TEXT]: an IP address (kept as /32 or /128) or a CIDR range, and up to 256 characters that say what it is"

func newACLCreateCmd(a *app) *cobra.Command {
	var name string
	var entries []string
	cmd := &cobra.Command{
		Use:   "create --name NAME [--entry CIDR[,description=TEXT]]...",
		Short: "Create an ACL",
		Long: `Creates an ACL with the entries given, up to 500. An entry is an IPv4 or IPv6 address or CIDR
range; it is kept in canonical form, a single address as /32 or /128 and a range with its host
bits cleared (10.1.2.3/8 is 10.0.0.0/8), and each range may be listed once.`,
		Example: `  albctl acl create --name office --entry 10.0.0.0/8 --entry '192.168.1.7,description=build server'
  albctl acl create --name blocked --entry 203.0.113.0/24 --entry 2001:db8:bad::/48
  albctl acl create --name nobody-yet`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			parsed, err := parseEntries(entries)
			if err != nil {
				return err
			}
			var created *state.ACL
			_, err = a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				created, err = s.CreateACL(state.ACL{Name: name, Entries: parsed})
				return err
			})
			if err != nil {
				return err
			}
			return a.printACL(*created)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name (2-128 letters, digits, '.', '_', '-'; starts with a letter)")
	cmd.Flags().StringArrayVar(&entries, "entry", nil, entryHelp+" (repeatable)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func parseEntries(texts []string) ([]state.ACLEntry, error) {
	entries := make([]state.ACLEntry, len(texts))
	for i, text := range texts {
		e, err := state.ParseACLEntry(text)
		if err != nil {
			return nil, usageErrorf("invalid value %q for --entry: %v", text, err)
		}
		entries[i] = e
	}
	return entries, nil
}

// newACLEntriesCmd builds add-entries and remove-entries, which differ in what they do with
// the --entry values.
func newACLEntriesCmd(a *app, use, short, example, flagHelp string,
	change func(s *state.State, ref string, entries []string) (*state.ACL, error)) *cobra.Command {
	var entries []string
	cmd := &cobra.Command{
		Use:               use + " ACL --entry CIDR [--entry ...]",
		Short:             short,
		Example:           example,
		Args:              needArgs("ACL"),
		ValidArgsFunction: argCompletion(a.refCompletion(aclRefs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(entries) == 0 {
				return usageErrorf("give at least one --entry")
			}
			var updated *state.ACL
			_, err := a.store().Update(cmd.Context(), func(s *state.State) (err error) {
				updated, err = change(s, args[0], entries)
				return err
			})
			if err != nil {
				return err
			}
			return a.printACL(*updated)
		},
	}
	cmd.Flags().StringArrayVar(&entries, "entry", nil, flagHelp)
	return cmd
}

func newACLListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List ACLs and the listeners that use them",
		Example: "  albctl acl list\n  albctl acl list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store().Load(cmd.Context())
			if err != nil {
				return err
			}
			acls := s.ACLs
			if acls == nil {
				acls = []state.ACL{}
			}
			return a.print(acls, func() view {
				t := table{header: []string{"ID", "NAME", "ENTRIES", "LISTENERS"}}
				for _, acl := range acls {
					var users []string
					for _, l := range s.Listeners {
						if slices.Contains(l.ACLIDs, acl.ID) {
							users = append(users, l.ID+" ("+l.ACLType+")")
						}
					}
					t.rows = append(t.rows, []string{acl.ID, acl.Name, itoa(len(acl.Entries)), orDash(strings.Join(users, ", "))})
				}
				return t
			})
		},
	}
}

func (a *app) printACL(acl state.ACL) error {
	return a.print(acl, func() view {
		d := details{{"ID", acl.ID}, {"Name", acl.Name}, {"Entries", itoa(len(acl.Entries))}}
		if len(acl.Entries) == 0 {
			return d
		}
		entries := table{header: []string{"  CIDR", "DESCRIPTION"}}
		for _, e := range acl.Entries {
			entries.rows = append(entries.rows, []string{"  " + e.CIDR, e.Description})
		}
		return views{d, entries}
	})
}

func aclRefs(s *state.State) [][2]string {
	var out [][2]string
	for _, acl := range s.ACLs {
		out = append(out, [2]string{acl.ID, acl.Name}, [2]string{acl.Name, acl.ID})
	}
	return out
}

// aclFlags are a listener's ACL settings, which create and update share.
type aclFlags struct {
	refs    []string
	aclType string
	clear   bool
}

func (f *aclFlags) register(a *app, cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringArrayVar(&f.refs, "acl", nil, "ACL to check the clients' addresses against at accept, by ID or name (repeatable, up to 3; update replaces the listener's ACLs)")
	fs.StringVar(&f.aclType, "acl-type", "", "white (admit only the clients the ACLs list) or black (refuse them), for a listener with ACLs")
	_ = cmd.RegisterFlagCompletionFunc("acl", a.refCompletion(aclRefs))
	_ = cmd.RegisterFlagCompletionFunc("acl-type", fixedCompletion(state.ACLWhite, state.ACLBlack))
}

func (f *aclFlags) registerClear(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.clear, "clear-acls", false, "stop checking clients' addresses: drop the listener's ACLs and ACL type")
}

// apply writes the ACL flags the user set onto l.
func (f *aclFlags) apply(fs *pflag.FlagSet, l *state.Listener) error {
	if f.clear && (fs.Changed("acl") || fs.Changed("acl-type")) {
		return usageErrorf("give --acl and --acl-type, or --clear-acls, not both")
	}
	if f.clear {
		l.ACLIDs, l.ACLType = nil, ""
	}
	if fs.Changed("acl-type") {
		t, err := canonical("--acl-type", f.aclType, state.ACLWhite, state.ACLBlack)
		if err != nil {
			return err
		}
		l.ACLType = t
	}
	setIfChanged(fs, "acl", &l.ACLIDs, slices.Clone(f.refs))
	return nil
}
