package probe

import (
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// progName is how usage and error text refer to the command.
const progName = "albctl probe"

// options holds the parsed command line.
type options struct {
	plaintext, insecure     bool
	cacert, cert, key       string
	serverName, authority   string
	headers                 multiString
	rpcHeaders, reflHeaders multiString
	expandHeaders           bool
	data                    string
	format                  string
	emitDefaults            bool
	allowUnknownFields      bool
	formatError             bool
	connectTimeout          float64
	maxTime                 float64
	keepaliveTime           float64
	maxMsgSize              int
	protoFiles, importPaths multiString
	protosets               multiString
	useReflection           optionalBool
	msgTemplate             bool
	userAgent               string
	verbose, veryVerbose    bool
	resolver                string
	protocol, origin        string

	// From the positional arguments.
	target string
	verb   string // verbList, verbDescribe or verbInvoke
	symbol string
}

const (
	verbList     = "list"
	verbDescribe = "describe"
	verbInvoke   = "invoke"
)

// usageError is a command line mistake: it is printed with a pointer to
// -help and exits 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// overrideName is the server name given with -servername or -authority.
func (o *options) overrideName() string {
	if o.serverName != "" {
		return o.serverName
	}
	return o.authority
}

func (o *options) verbosity() int {
	switch {
	case o.veryVerbose:
		return 2
	case o.verbose:
		return 1
	}
	return 0
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(progName, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.plaintext, "plaintext", false, "Use plain-text HTTP/2 (h2c), no TLS.")
	fs.BoolVar(&o.insecure, "insecure", false, "Skip server certificate and name verification (not secure). Not valid with -plaintext.")
	fs.StringVar(&o.cacert, "cacert", "", "`FILE` with trusted root certificates (PEM) for verifying the server.")
	fs.StringVar(&o.cert, "cert", "", "`FILE` with the client certificate (PEM). Needs -key. Not valid with -plaintext.")
	fs.StringVar(&o.key, "key", "", "`FILE` with the client private key (PEM). Needs -cert. Not valid with -plaintext.")
	fs.StringVar(&o.serverName, "servername", "", "Server name to verify the certificate against (default: the host in ADDRESS).")
	fs.StringVar(&o.authority, "authority", "", "Value of the :authority pseudo-header; with TLS also the name to verify.")
	fs.Var(&o.headers, "H", "Header `'name: value'` sent with the call and with reflection requests. Repeatable.")
	fs.Var(&o.rpcHeaders, "rpc-header", "Header `'name: value'` sent only with the call. Repeatable.")
	fs.Var(&o.reflHeaders, "reflect-header", "Header `'name: value'` sent only with reflection requests. Repeatable.")
	fs.BoolVar(&o.expandHeaders, "expand-headers", false, "Expand ${NAME} in header values from the environment.")
	fs.StringVar(&o.data, "d", "", "Request data; '@' reads it from stdin. Streams take several messages concatenated.")
	fs.StringVar(&o.format, "format", "json", "Format of request data and responses: json or text.")
	fs.BoolVar(&o.emitDefaults, "emit-defaults", false, "Print fields with default values in JSON responses.")
	fs.BoolVar(&o.allowUnknownFields, "allow-unknown-fields", false, "Ignore unknown fields in JSON request data.")
	fs.BoolVar(&o.formatError, "format-error", false, "Print a non-OK status in the -format format.")
	fs.Float64Var(&o.connectTimeout, "connect-timeout", 0, "Seconds to wait for the connection (default 10).")
	fs.Float64Var(&o.maxTime, "max-time", 0, "Seconds the whole operation may take (default: no limit).")
	fs.Float64Var(&o.keepaliveTime, "keepalive-time", 0, "Seconds of idleness before a keepalive ping.")
	fs.IntVar(&o.maxMsgSize, "max-msg-sz", 0, "Largest response message accepted, in bytes (default 4194304).")
	fs.Var(&o.protoFiles, "proto", "Proto source `FILE` describing the services, instead of reflection. Repeatable.")
	fs.Var(&o.importPaths, "import-path", "Import `DIR` for -proto files. Repeatable.")
	fs.Var(&o.protosets, "protoset", "`FILE` with an encoded FileDescriptorSet, instead of reflection. Repeatable.")
	fs.Var(&o.useReflection, "use-reflection", "Use server reflection (default true unless -proto or -protoset is given).")
	fs.BoolVar(&o.msgTemplate, "msg-template", false, "With describe, also print a JSON template of a message.")
	fs.StringVar(&o.userAgent, "user-agent", "", "Text to prepend to the User-Agent header.")
	fs.BoolVar(&o.verbose, "v", false, "Verbose: connection details, metadata, headers and trailers.")
	fs.BoolVar(&o.veryVerbose, "vv", false, "Very verbose: -v plus message sizes and timing.")
	fs.StringVar(&o.resolver, "resolver", "", "Resolve the host with the DNS server at `HOST:PORT`.")
	fs.StringVar(&o.protocol, "protocol", protocolGRPC, "Make the call with `PROTOCOL`: grpc, or as a web page would with grpc-web, grpc-web-text or connect (reflection still uses grpc).")
	fs.StringVar(&o.origin, "origin", "", "With -protocol other than grpc: send the call as from a page of `ORIGIN` (https://app.example.com), after the CORS preflight a browser makes.")
	fs.Usage = func() { printUsage(fs) }
	return fs
}

func printUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, `Usage:
  %[1]s [flags] ADDRESS list [SERVICE]
  %[1]s [flags] ADDRESS describe [SYMBOL]
  %[1]s [flags] ADDRESS SERVICE/METHOD

Calls a gRPC server the way grpcurl does, with the same flags, output and
exit codes, but fails fast and says why when the server cannot be reached
(unknown name, refused connection, TLS or HTTP/2 problems).

ADDRESS is HOST:PORT. Without a verb, the argument names a method as
'package.Service/Method' or 'package.Service.Method', and the -d data (or an
empty message) is sent to it. Flags go before ADDRESS.

Exit codes: 0 success, 1 error, 2 usage error, 64+N when the call ends with
gRPC status code N (for example 76 for UNIMPLEMENTED).

Examples:
  %[1]s -plaintext 127.0.0.1:50051 list
  %[1]s -cacert ca.pem grpc.example.com:443 describe echo.Echo
  %[1]s -insecure -v grpc.example.com:443 echo.Echo/Say
  %[1]s -plaintext -d '{"message": "hi"}' 127.0.0.1:50051 echo.Echo/Say
  echo '{"message": "hi"}' | %[1]s -plaintext -d @ 127.0.0.1:50051 echo.Echo/Say
  %[1]s --resolver 127.0.0.1:5353 -insecure grpc.example.com:443 list
  %[1]s -protocol grpc-web-text -origin https://app.example.com -v grpc.example.com:443 echo.Echo/Say

Flags (one or two dashes):
`, progName)
	fs.PrintDefaults()
}

// parseArgs parses the command line. It returns flag.ErrHelp for -h/-help
// and a usageError for mistakes; both have been explained on stderr by then
// except for usage errors, which the caller prints.
func parseArgs(args []string, stderr io.Writer) (*options, []string, error) {
	o := &options{}
	fs := newFlagSet(o, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}

	var warnings []string
	warn := func(msg string) { warnings = append(warnings, msg) }
	usetls := !o.plaintext
	switch {
	case o.connectTimeout < 0:
		return nil, nil, usageError("The -connect-timeout argument must not be negative.")
	case o.keepaliveTime < 0:
		return nil, nil, usageError("The -keepalive-time argument must not be negative.")
	case o.maxTime < 0:
		return nil, nil, usageError("The -max-time argument must not be negative.")
	case o.maxMsgSize < 0:
		return nil, nil, usageError("The -max-msg-sz argument must not be negative.")
	case o.insecure && !usetls:
		return nil, nil, usageError("The -insecure argument can only be used with TLS.")
	case o.cert != "" && !usetls:
		return nil, nil, usageError("The -cert argument can only be used with TLS.")
	case o.key != "" && !usetls:
		return nil, nil, usageError("The -key argument can only be used with TLS.")
	case (o.key == "") != (o.cert == ""):
		return nil, nil, usageError("The -cert and -key arguments must be used together and both be present.")
	case o.format != "json" && o.format != "text":
		return nil, nil, usageError("The -format option must be 'json' or 'text'.")
	case usetls && o.serverName != "" && o.authority != "" && o.serverName != o.authority:
		return nil, nil, usageError("Cannot specify different values for -servername and -authority.")
	}
	if o.emitDefaults && o.format != "json" {
		warn("The -emit-defaults is only used when using json format.")
	}
	if usetls && o.serverName != "" && o.serverName == o.authority {
		warn("Both -servername and -authority are present; prefer only -authority.")
	}

	rest := fs.Args()
	if len(rest) > 0 && rest[0] != verbList && rest[0] != verbDescribe {
		o.target, rest = rest[0], rest[1:]
	}
	if len(rest) == 0 {
		return nil, nil, usageError("Too few arguments.")
	}
	switch rest[0] {
	case verbList, verbDescribe:
		o.verb, rest = rest[0], rest[1:]
		if o.data != "" {
			warn("The -d argument is not used with 'list' or 'describe' verb.")
		}
		if len(o.rpcHeaders) > 0 {
			warn("The -rpc-header argument is not used with 'list' or 'describe' verb.")
		}
		if len(rest) > 0 {
			o.symbol, rest = rest[0], rest[1:]
		}
	default:
		o.verb = verbInvoke
		o.symbol, rest = rest[0], rest[1:]
	}

	hasFiles := len(o.protosets) > 0 || len(o.protoFiles) > 0
	switch {
	case len(rest) > 0:
		return nil, nil, usageError("Too many arguments.")
	case o.verb == verbInvoke && o.target == "":
		return nil, nil, usageError("No host:port specified.")
	case !hasFiles && o.target == "":
		return nil, nil, usageError("No host:port specified, no protoset specified, and no proto sources specified.")
	case len(o.protosets) > 0 && len(o.protoFiles) > 0:
		return nil, nil, usageError("Use either -protoset files or -proto files, but not both.")
	case o.useReflection.set && !o.useReflection.val && !hasFiles:
		return nil, nil, usageError("No protoset files or proto files specified and -use-reflection set to false.")
	case !slices.Contains(webProtocols, o.protocol):
		return nil, nil, usageError(fmt.Sprintf("Invalid -protocol %q: must be %s.", o.protocol, strings.Join(webProtocols, ", ")))
	case o.origin != "" && o.protocol == protocolGRPC:
		return nil, nil, usageError("-origin needs -protocol grpc-web, grpc-web-text or connect: pages cannot make gRPC calls.")
	case o.protocol != protocolGRPC && strings.Contains(o.target, "://"):
		return nil, nil, usageError(fmt.Sprintf("-protocol %s calls HOST:PORT over HTTPS (or HTTP with -plaintext), not %s.", o.protocol, o.target))
	}
	if len(o.protosets) > 0 && len(o.reflHeaders) > 0 {
		warn("The -reflect-header argument is not used when -protoset files are used.")
	}
	if len(o.importPaths) > 0 && len(o.protoFiles) == 0 {
		warn("The -import-path argument is not used unless -proto files are used.")
	}
	if !o.useReflection.set {
		// Reflection is the default unless the schema comes from files.
		o.useReflection.val = !hasFiles
	}
	return o, warnings, nil
}

// multiString is a repeatable string flag.
type multiString []string

func (s *multiString) String() string { return strings.Join(*s, ",") }

func (s *multiString) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// optionalBool is a boolean flag that remembers whether it was given.
type optionalBool struct{ set, val bool }

func (b *optionalBool) String() string {
	if !b.set {
		return "unset"
	}
	return strconv.FormatBool(b.val)
}

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.val = true, v
	return nil
}

func (b *optionalBool) IsBoolFlag() bool { return true }

// seconds converts a flag value in seconds to a Duration without overflow.
func seconds(s float64) time.Duration {
	d := s * float64(time.Second)
	if d > math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(d)
}
