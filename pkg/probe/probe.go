// Package probe is the gRPC tester behind "albctl probe". It takes grpcurl's
// flags and verbs (list, describe, calling a method), prints grpcurl's output
// and uses grpcurl's exit codes, so that instructions written for grpcurl work
// unchanged. Where grpcurl waits out its connect timeout and reports "context
// deadline exceeded", the probe connects and handshakes itself first and says
// what went wrong: an unknown name, a refused connection, a certificate
// problem, a server without HTTP/2, TLS on one side only, or no reflection.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fullstorydev/grpcurl"
	//lint:ignore SA1019 grpcurl's DescriptorSource hands out these v1 descriptor types.
	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/grpcreflect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/descriptorpb"

	// Servers may compress responses with gzip.
	_ "google.golang.org/grpc/encoding/gzip"
)

// statusCodeOffset keeps gRPC status codes apart from the probe's own exit
// codes 1 and 2: a call ending with status N exits with 64+N.
const statusCodeOffset = 64

// Env is what Main needs from its caller.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// Resolve maps a host name to addresses before the system resolver is
	// asked; nil means the system resolver only. chain lists the records
	// followed, one per line (e.g. "grpc.example.test CNAME alb-x.local"),
	// and is printed with -v. Returning no addresses and no error means the
	// name is not one Resolve knows, and the system resolver is asked; an
	// error is final (return a *net.DNSError with IsNotFound set for a name
	// that does not exist, so it is reported as an unknown host).
	Resolve func(ctx context.Context, host string) (addrs []string, chain []string, err error)

	// Hint returns an extra line of advice for a failure, or "" to use the
	// probe's own. It may be nil.
	Hint func(failure Failure) string
}

// Main runs the probe with the arguments that follow "albctl probe" and
// returns the exit code: 0 success, 1 error, 2 usage error, 64+N for a call
// that ended with gRPC status code N.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	opts, warnings, err := parseArgs(args, env.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var usage usageError
	if errors.As(err, &usage) {
		fmt.Fprintln(env.Stderr, usage)
		fmt.Fprintf(env.Stderr, "Try '%s -help' for more details.\n", progName)
		return 2
	}
	if err != nil {
		// The flag package has already printed the problem and the usage.
		return 2
	}
	for _, w := range warnings {
		fmt.Fprintf(env.Stderr, "Warning: %s\n", w)
	}
	r := &runner{opts: opts, env: env, verbosity: opts.verbosity()}
	return r.run(ctx)
}

// runner carries one invocation's options and outputs.
type runner struct {
	opts      *options
	env       Env
	verbosity int
	timing    *timing // nil unless -vv
	// What dial connected with, for a call over another protocol than gRPC.
	tlsConf *tls.Config
	addr    string
}

// stepError is a failure in one step, printed as "<step>: <cause>" the way
// grpcurl prints it.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.step + ": " + e.err.Error() }

func (e *stepError) Unwrap() error { return e.err }

func failed(step string, err error) error { return &stepError{step: step, err: err} }

// verbosef writes connection details for -v. They go to stderr, like curl's
// "*" lines, so that stdout stays exactly what grpcurl would print.
func (r *runner) verbosef(format string, args ...any) {
	if r.verbosity > 0 {
		fmt.Fprintf(r.env.Stderr, format, args...)
	}
}

func (r *runner) run(ctx context.Context) int {
	if r.verbosity > 1 {
		r.timing = &timing{title: "Timing Data", start: time.Now()}
	}
	if r.opts.maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, seconds(r.opts.maxTime))
		defer cancel()
	}
	code, err := r.execute(ctx)
	if err != nil {
		return r.report(err)
	}
	if code == 0 && r.timing != nil {
		r.timing.done()
		r.timing.print(r.env.Stdout, 0)
	}
	return code
}

// report prints err on stderr and returns exit code 1.
func (r *runner) report(err error) int {
	var f *Failure
	if !errors.As(err, &f) && isNoReflection(err) {
		f = &Failure{Kind: FailNoReflection, Target: r.opts.target,
			Detail: fmt.Sprintf("server at %s does not support the reflection API", r.opts.target), Err: err}
	}
	if f == nil {
		fmt.Fprintln(r.env.Stderr, err)
		return 1
	}
	fmt.Fprintf(r.env.Stderr, "ERROR: %s\n", f.Detail)
	hint := ""
	if r.env.Hint != nil {
		hint = r.env.Hint(*f)
	}
	if hint == "" {
		hint = defaultHint(f)
	}
	if hint != "" {
		fmt.Fprintf(r.env.Stderr, "  hint: %s\n", hint)
	}
	return 1
}

// isNoReflection reports whether err says the server lacks reflection.
// grpcurl formats the error into its own with %v in places, so errors.Is
// is not enough.
func isNoReflection(err error) bool {
	return errors.Is(err, grpcurl.ErrReflectionNotSupported) ||
		strings.Contains(err.Error(), grpcurl.ErrReflectionNotSupported.Error())
}

// execute does the work and returns the exit code, or an error for exit 1.
func (r *runner) execute(ctx context.Context) (int, error) {
	o := r.opts
	headers := o.headers
	rpcHeaders := o.rpcHeaders
	reflHeaders := o.reflHeaders
	if o.expandHeaders {
		var err error
		if headers, err = grpcurl.ExpandHeaders(headers); err != nil {
			return 0, failed("Failed to expand additional headers", err)
		}
		if rpcHeaders, err = grpcurl.ExpandHeaders(rpcHeaders); err != nil {
			return 0, failed("Failed to expand rpc headers", err)
		}
		if reflHeaders, err = grpcurl.ExpandHeaders(reflHeaders); err != nil {
			return 0, failed("Failed to expand reflection headers", err)
		}
	}

	var fileSource grpcurl.DescriptorSource
	var err error
	switch {
	case len(o.protosets) > 0:
		if fileSource, err = grpcurl.DescriptorSourceFromProtoSets(o.protosets...); err != nil {
			return 0, failed("Failed to process proto descriptor sets.", err)
		}
	case len(o.protoFiles) > 0:
		if fileSource, err = grpcurl.DescriptorSourceFromProtoFiles(o.importPaths, o.protoFiles...); err != nil {
			return 0, failed("Failed to process proto source files.", err)
		}
	}

	var cc *grpc.ClientConn
	descSource := fileSource
	if o.useReflection.val {
		if cc, err = r.dial(ctx); err != nil {
			return 0, err
		}
		defer cc.Close()
		md := grpcurl.MetadataFromHeaders(append(append([]string(nil), headers...), reflHeaders...))
		refClient := grpcreflect.NewClientAuto(metadata.NewOutgoingContext(ctx, md), cc)
		refClient.AllowMissingFileDescriptors()
		defer refClient.Reset()
		descSource = grpcurl.DescriptorSourceFromServer(ctx, refClient)
		if fileSource != nil {
			descSource = compositeSource{reflection: descSource, file: fileSource}
		}
	}

	switch o.verb {
	case verbList:
		return 0, r.list(descSource)
	case verbDescribe:
		return 0, r.describe(descSource)
	}
	if cc == nil {
		if cc, err = r.dial(ctx); err != nil {
			return 0, err
		}
		defer cc.Close()
	}
	callHeaders := append(append([]string(nil), headers...), rpcHeaders...)
	if o.protocol == protocolGRPC {
		return r.invoke(ctx, cc, descSource, callHeaders)
	}
	web := r.webConn()
	defer web.Close()
	if o.origin != "" {
		verdict, err := web.Preflight(ctx, methodPath(o.symbol), callHeaders)
		if err != nil {
			return 0, failed(fmt.Sprintf("CORS preflight from %s refused", o.origin), err)
		}
		r.verbosef("* CORS preflight from %s: %s\n", o.origin, verdict)
	}
	return r.invoke(ctx, web, descSource, callHeaders)
}

func (r *runner) list(source grpcurl.DescriptorSource) error {
	out := r.env.Stdout
	if r.opts.symbol == "" {
		services, err := grpcurl.ListServices(source)
		if err != nil {
			return failed("Failed to list services", err)
		}
		if len(services) == 0 {
			fmt.Fprintln(out, "(No services)")
		}
		for _, s := range services {
			fmt.Fprintln(out, s)
		}
		return nil
	}
	methods, err := grpcurl.ListMethods(source, r.opts.symbol)
	if err != nil {
		return failed(fmt.Sprintf("Failed to list methods for service %q", r.opts.symbol), err)
	}
	if len(methods) == 0 {
		fmt.Fprintln(out, "(No methods)")
	}
	for _, m := range methods {
		fmt.Fprintln(out, m)
	}
	return nil
}

func (r *runner) describe(source grpcurl.DescriptorSource) error {
	out := r.env.Stdout
	symbols := []string{r.opts.symbol}
	if r.opts.symbol == "" {
		// Without a symbol, describe every service.
		services, err := source.ListServices()
		if err != nil {
			return failed("Failed to list services", err)
		}
		if len(services) == 0 {
			fmt.Fprintln(out, "Server returned an empty list of exposed services")
		}
		symbols = services
	}
	for _, name := range symbols {
		name = strings.TrimPrefix(name, ".")
		d, err := source.FindSymbol(name)
		if err != nil {
			return failed(fmt.Sprintf("Failed to resolve symbol %q", name), err)
		}
		fullName := d.GetFullyQualifiedName()
		d, kind := describedElement(d)
		if kind == "" {
			return failed(fmt.Sprintf("Failed to describe symbol %q", name), fmt.Errorf("descriptor has unrecognized type %T", d))
		}
		text, err := grpcurl.GetDescriptorText(d, source)
		if err != nil {
			return failed(fmt.Sprintf("Failed to describe symbol %q", name), err)
		}
		fmt.Fprintf(out, "%s is %s:\n", fullName, kind)
		fmt.Fprintln(out, text)

		if msg, ok := d.(*desc.MessageDescriptor); ok && r.opts.msgTemplate {
			_, formatter, err := grpcurl.RequestParserAndFormatter(grpcurl.Format(r.opts.format), source, nil,
				grpcurl.FormatOptions{EmitJSONDefaultFields: true})
			if err != nil {
				return failed(fmt.Sprintf("Failed to construct formatter for %q", r.opts.format), err)
			}
			template, err := formatter(grpcurl.MakeTemplate(msg))
			if err != nil {
				return failed(fmt.Sprintf("Failed to print template for message %s", name), err)
			}
			fmt.Fprintln(out, "\nMessage template:")
			fmt.Fprintln(out, template)
		}
	}
	return nil
}

// describedElement names what kind of element d is. Map entry messages and
// group messages are described through the field that uses them, because
// that is how they appear in a .proto file.
func describedElement(d desc.Descriptor) (desc.Descriptor, string) {
	switch d := d.(type) {
	case *desc.MessageDescriptor:
		parent, ok := d.GetParent().(*desc.MessageDescriptor)
		if !ok {
			return d, "a message"
		}
		for _, f := range parent.GetFields() {
			if f.GetMessageType() != d {
				continue
			}
			if d.IsMapEntry() && f.IsMap() {
				return f, "the entry type for a map field"
			}
			if !d.IsMapEntry() && f.GetType() == descriptorpb.FieldDescriptorProto_TYPE_GROUP {
				return f, "the type of a group field"
			}
		}
		return d, "a message"
	case *desc.FieldDescriptor:
		switch {
		case d.GetType() == descriptorpb.FieldDescriptorProto_TYPE_GROUP:
			return d, "a group field"
		case d.IsExtension():
			return d, "an extension"
		}
		return d, "a field"
	case *desc.OneOfDescriptor:
		return d, "a one-of"
	case *desc.EnumDescriptor:
		return d, "an enum"
	case *desc.EnumValueDescriptor:
		return d, "an enum value"
	case *desc.ServiceDescriptor:
		return d, "a service"
	case *desc.MethodDescriptor:
		return d, "a method"
	}
	return d, ""
}

// invoke calls the method and returns the exit code.
func (r *runner) invoke(ctx context.Context, cc grpc.ClientConnInterface, source grpcurl.DescriptorSource, headers []string) (int, error) {
	var in io.Reader = strings.NewReader(r.opts.data)
	if r.opts.data == "@" {
		in = r.env.Stdin
	}
	formatOpts := grpcurl.FormatOptions{
		EmitJSONDefaultFields: r.opts.emitDefaults,
		// Without -v, separate text-format responses with a record
		// separator so the output can feed another probe.
		IncludeTextSeparator: r.verbosity == 0,
		AllowUnknownFields:   r.opts.allowUnknownFields,
	}
	parser, formatter, err := grpcurl.RequestParserAndFormatter(grpcurl.Format(r.opts.format), source, in, formatOpts)
	if err != nil {
		return 0, failed(fmt.Sprintf("Failed to construct request parser and formatter for %q", r.opts.format), err)
	}
	handler := &grpcurl.DefaultEventHandler{
		Out:            r.env.Stdout,
		Formatter:      formatter,
		VerbosityLevel: r.verbosity,
	}
	invokeTiming := r.timing.child("InvokeRPC")
	err = grpcurl.InvokeRPC(ctx, source, cc, r.opts.symbol, headers, handler, parser.Next)
	invokeTiming.done()
	if err != nil {
		st, ok := status.FromError(err)
		if !ok || !r.opts.formatError {
			return 0, failed(fmt.Sprintf("Error invoking method %q", r.opts.symbol), err)
		}
		handler.Status = st
	}
	if r.verbosity > 0 {
		fmt.Fprintf(r.env.Stdout, "Sent %s and received %s\n",
			plural(parser.NumRequests(), "request"), plural(handler.NumResponses, "response"))
	}
	if handler.Status.Code() == codes.OK {
		return 0, nil
	}
	if r.opts.formatError {
		text, err := formatter(handler.Status.Proto())
		if err != nil {
			fmt.Fprintf(r.env.Stderr, "ERROR: %v", err)
		}
		fmt.Fprint(r.env.Stderr, text)
	} else {
		grpcurl.PrintStatus(r.env.Stderr, handler.Status, formatter)
	}
	return statusCodeOffset + int(handler.Status.Code()), nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// compositeSource answers from reflection first and falls back to the
// -proto/-protoset files, but lists only what the server exposes.
type compositeSource struct {
	reflection grpcurl.DescriptorSource
	file       grpcurl.DescriptorSource
}

func (c compositeSource) ListServices() ([]string, error) { return c.reflection.ListServices() }

func (c compositeSource) FindSymbol(name string) (desc.Descriptor, error) {
	if d, err := c.reflection.FindSymbol(name); err == nil {
		return d, nil
	}
	return c.file.FindSymbol(name)
}

func (c compositeSource) AllExtensionsForType(typeName string) ([]*desc.FieldDescriptor, error) {
	exts, err := c.reflection.AllExtensionsForType(typeName)
	if err != nil {
		return c.file.AllExtensionsForType(typeName)
	}
	fromFiles, err := c.file.AllExtensionsForType(typeName)
	if err != nil {
		return exts, nil
	}
	known := map[int32]bool{}
	for _, e := range exts {
		known[e.GetNumber()] = true
	}
	for _, e := range fromFiles {
		if !known[e.GetNumber()] {
			exts = append(exts, e)
		}
	}
	return exts, nil
}

// timing records how long the steps took, printed with -vv.
type timing struct {
	title    string
	start    time.Time
	duration time.Duration
	children []*timing
}

// child starts a sub-step; it is a no-op on a nil timing.
func (t *timing) child(title string) *timing {
	if t == nil {
		return nil
	}
	c := &timing{title: title, start: time.Now()}
	t.children = append(t.children, c)
	return c
}

func (t *timing) done() {
	if t != nil && t.duration == 0 {
		t.duration = time.Since(t.start)
	}
}

func (t *timing) print(w io.Writer, depth int) {
	fmt.Fprintf(w, "%s%s: %s\n", strings.Repeat("  ", depth), t.title, t.duration)
	for _, c := range t.children {
		c.print(w, depth+1)
	}
}
