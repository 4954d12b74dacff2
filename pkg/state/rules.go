package state

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Rule condition types, as the cloud names them.
const (
	CondHost        = "Host"
	CondPath        = "Path"
	CondHeader      = "Header"
	CondMethod      = "Method"
	CondQueryString = "QueryString"
	CondCookie      = "Cookie"
	CondSourceIP    = "SourceIp"
)

// Limits of a rule, as the cloud's.
const (
	MinRulePriority         = 1
	MaxRulePriority         = 10000
	MaxRuleConditions       = 10
	MaxRuleActions          = 5
	MaxConditionValues      = 20
	MaxSourceIPValues       = 5
	MaxForwardGroups        = 5
	MaxForwardWeight        = 100
	MaxTrafficLimitQPS      = 1000000
	MaxFixedResponseBytes   = 1024
	MaxHeaderKeyLength      = 40
	MaxHeaderValueLength    = 128
	MaxPathOrHostLength     = 128
	MaxQueryOrCookieKey     = 100
	MaxQueryValueLength     = 128
	MaxCookieValueLength    = 100
	MaxGRPCStatusCode       = 16
	MaxFixedMessageLength   = 1024
	DefaultFixedContentType = "text/plain"
)

// Rule is a listener's forwarding rule: calls that meet every condition get its actions. Rules
// are tried by ascending priority and the first that matches wins; a call no rule matches goes
// to the listener's own server group.
type Rule struct {
	ID         string          `json:"id"`
	Name       string          `json:"name,omitempty"`
	ListenerID string          `json:"listenerId"`
	Priority   int             `json:"priority"`
	Conditions []RuleCondition `json:"conditions"`
	// The final action: exactly one of Forward and FixedResponse.
	Forward       []ForwardTarget `json:"forward,omitempty"`
	FixedResponse *FixedResponse  `json:"fixedResponse,omitempty"`
	// Actions run before the final one.
	InsertHeaders []HeaderField `json:"insertHeaders,omitempty"`
	RemoveHeaders []string      `json:"removeHeaders,omitempty"`
	TrafficLimit  *TrafficLimit `json:"trafficLimit,omitempty"`
}

// RuleCondition is one condition of a rule: the call matches it if any of its values matches.
// Key names the header, query parameter or cookie for those types.
type RuleCondition struct {
	Type   string   `json:"type"`
	Key    string   `json:"key,omitempty"`
	Values []string `json:"values"`
}

// ForwardTarget is one server group of a forward action and its share of the calls.
type ForwardTarget struct {
	ServerGroupID string `json:"serverGroupId"`
	Weight        int    `json:"weight"`
}

// FixedResponse answers a call at the load balancer: with a gRPC status for a gRPC listener,
// with an HTTP response for an HTTP one.
type FixedResponse struct {
	GRPCStatus  *int   `json:"grpcStatus,omitempty"`
	Message     string `json:"message,omitempty"`
	HTTPCode    int    `json:"httpCode,omitempty"`
	ContentType string `json:"contentType,omitempty"`
	Body        string `json:"body,omitempty"`
}

// HeaderField is a request header a rule inserts.
type HeaderField struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// TrafficLimit caps the calls a rule admits per second, in all and per client address.
type TrafficLimit struct {
	QPS      int `json:"qps"`
	PerIPQPS int `json:"perIpQps,omitempty"`
}

// Actions counts the rule's actions as the cloud does: the final one and each that runs before.
func (r *Rule) Actions() int {
	n := 1 + len(r.InsertHeaders) + len(r.RemoveHeaders)
	if r.TrafficLimit != nil {
		n++
	}
	return n
}

// Label is the rule's name, or its ID if it has none.
func (r *Rule) Label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.ID
}

func ruleIDName(r *Rule) (string, string) { return r.ID, r.Name }

// Rule returns the rule with the ID or name ref.
func (s *State) Rule(ref string) (*Rule, error) {
	if ref != "" {
		if i := find(s.Rules, ref, ruleIDName); i >= 0 {
			return &s.Rules[i], nil
		}
	}
	return nil, &NotFoundError{Kind: "rule", Ref: ref}
}

// ListenerRules returns the listener's rules in the order they are tried.
func (s *State) ListenerRules(listenerID string) []Rule {
	var out []Rule
	for _, r := range s.Rules {
		if r.ListenerID == listenerID {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Rule) int { return a.Priority - b.Priority })
	return out
}

// CreateRule adds a rule with a new ID. The listener and server groups may be named by ID or
// name; they are stored as IDs.
func (s *State) CreateRule(r Rule) (*Rule, error) {
	r.ID = newID(prefixRule)
	if err := s.resolveRuleRefs(&r); err != nil {
		return nil, err
	}
	if err := r.validate(s); err != nil {
		return nil, err
	}
	s.Rules = append(s.Rules, r)
	return &s.Rules[len(s.Rules)-1], nil
}

// UpdateRule applies change to the rule ref, resolves its references and validates it.
func (s *State) UpdateRule(ref string, change func(*Rule) error) (*Rule, error) {
	r, err := s.Rule(ref)
	if err != nil {
		return nil, err
	}
	updated := r.clone()
	if err := change(&updated); err != nil {
		return nil, err
	}
	updated.ID, updated.ListenerID = r.ID, r.ListenerID
	if err := s.resolveRuleRefs(&updated); err != nil {
		return nil, err
	}
	if err := updated.validate(s); err != nil {
		return nil, err
	}
	*r = updated
	return r, nil
}

// DeleteRule removes a rule.
func (s *State) DeleteRule(ref string) (*Rule, error) {
	r, err := s.Rule(ref)
	if err != nil {
		return nil, err
	}
	deleted := *r
	s.Rules = remove(s.Rules, r.ID, ruleIDName)
	return &deleted, nil
}

func (r *Rule) clone() Rule {
	c := *r
	c.Conditions = make([]RuleCondition, len(r.Conditions))
	for i, cond := range r.Conditions {
		cond.Values = slices.Clone(cond.Values)
		c.Conditions[i] = cond
	}
	c.Forward = slices.Clone(r.Forward)
	if r.FixedResponse != nil {
		fr := *r.FixedResponse
		c.FixedResponse = &fr
	}
	c.InsertHeaders = slices.Clone(r.InsertHeaders)
	c.RemoveHeaders = slices.Clone(r.RemoveHeaders)
	if r.TrafficLimit != nil {
		tl := *r.TrafficLimit
		c.TrafficLimit = &tl
	}
	return c
}

func (s *State) resolveRuleRefs(r *Rule) error {
	l, err := s.Listener(r.ListenerID)
	if err != nil {
		return err
	}
	r.ListenerID = l.ID
	for i, t := range r.Forward {
		sg, err := s.ServerGroup(t.ServerGroupID)
		if err != nil {
			return err
		}
		r.Forward[i].ServerGroupID = sg.ID
	}
	return nil
}

// rulesWhere lists the labels of the rules that match, for error messages.
func (s *State) rulesWhere(match func(*Rule) bool) string {
	var users []string
	for i := range s.Rules {
		if match(&s.Rules[i]) {
			users = append(users, s.Rules[i].Label())
		}
	}
	return strings.Join(users, ", ")
}

func (r *Rule) forwardsTo(groupID string) bool {
	return slices.ContainsFunc(r.Forward, func(t ForwardTarget) bool { return t.ServerGroupID == groupID })
}

// isGRPCListener reports whether a listener carries gRPC calls: its own group is gRPC.
func (s *State) isGRPCListener(l *Listener) bool {
	sg, err := s.ServerGroup(l.ServerGroupID)
	return err == nil && sg.Protocol == ProtocolGRPC
}

func (r *Rule) validate(s *State) error {
	if r.Name != "" {
		if err := validateName(r.Name, prefixRule); err != nil {
			return err
		}
	}
	l, err := s.Listener(r.ListenerID)
	if err != nil {
		return invalid("listenerId", r.ListenerID, "no such listener")
	}
	if err := checkRange("priority", r.Priority, MinRulePriority, MaxRulePriority); err != nil {
		return err
	}
	for i := range s.Rules {
		other := &s.Rules[i]
		if other.ID == r.ID {
			continue
		}
		if other.ListenerID == r.ListenerID && other.Priority == r.Priority {
			return invalid("priority", r.Priority, "rule %s of listener %s has this priority already: each rule of a listener needs its own", other.Label(), l.ID)
		}
		if r.Name != "" && other.Name == r.Name {
			return conflict("a rule named %q already exists", r.Name)
		}
	}
	if len(r.Conditions) == 0 {
		return invalid("conditions", "", "a rule needs at least one condition")
	}
	if len(r.Conditions) > MaxRuleConditions {
		return invalid("conditions", fmt.Sprintf("%d conditions", len(r.Conditions)), "a rule has at most %d conditions", MaxRuleConditions)
	}
	for _, c := range r.Conditions {
		if err := c.Validate(); err != nil {
			return err
		}
	}
	if n := r.Actions(); n > MaxRuleActions {
		return invalid("actions", n, "a rule has at most %d actions: the forward or fixed response, each header it inserts or removes, and its traffic limit", MaxRuleActions)
	}
	grpc := s.isGRPCListener(l)
	switch {
	case len(r.Forward) > 0 && r.FixedResponse != nil:
		return invalid("forward", "", "a rule either forwards or answers with a fixed response, not both")
	case len(r.Forward) > 0:
		if err := r.validateForward(s, grpc); err != nil {
			return err
		}
	case r.FixedResponse != nil:
		if err := r.FixedResponse.validate(grpc); err != nil {
			return err
		}
	default:
		return invalid("forward", "", "a rule needs a final action: forward to server groups, or a fixed response")
	}
	if r.FixedResponse != nil {
		const rule = "header changes apply to forwarded calls, and this rule answers with a fixed response"
		if len(r.InsertHeaders) > 0 {
			return invalid("insertHeaders", r.InsertHeaders[0].Key, rule)
		}
		if len(r.RemoveHeaders) > 0 {
			return invalid("removeHeaders", r.RemoveHeaders[0], rule)
		}
	}
	seen := map[string]bool{}
	for _, h := range r.InsertHeaders {
		if err := ValidateHeaderChange("insertHeaders", h.Key); err != nil {
			return err
		}
		if !printable(h.Value) || len(h.Value) < 1 || len(h.Value) > MaxHeaderValueLength {
			return invalid("insertHeaders", h.Value, "a value is 1-%d printable ASCII characters", MaxHeaderValueLength)
		}
		if seen[h.Key] {
			return invalid("insertHeaders", h.Key, "each header is inserted at most once")
		}
		seen[h.Key] = true
	}
	for _, k := range r.RemoveHeaders {
		if err := ValidateHeaderChange("removeHeaders", k); err != nil {
			return err
		}
		if seen[k] {
			return invalid("removeHeaders", k, "the rule already inserts or removes this header")
		}
		seen[k] = true
	}
	if tl := r.TrafficLimit; tl != nil {
		if tl.QPS < 1 || tl.QPS > MaxTrafficLimitQPS {
			return invalid("trafficLimit.qps", tl.QPS, "qps must be 1-%d", MaxTrafficLimitQPS)
		}
		if tl.PerIPQPS != 0 && (tl.PerIPQPS < 1 || tl.PerIPQPS >= tl.QPS) {
			return invalid("trafficLimit.perIpQps", tl.PerIPQPS, "the limit per client IP must be 1 up to less than qps (%d)", tl.QPS)
		}
	}
	return nil
}

func (r *Rule) validateForward(s *State, grpc bool) error {
	if len(r.Forward) > MaxForwardGroups {
		return invalid("forward", fmt.Sprintf("%d groups", len(r.Forward)), "a rule forwards to at most %d server groups", MaxForwardGroups)
	}
	total := 0
	seen := map[string]bool{}
	for _, t := range r.Forward {
		sg, err := s.ServerGroup(t.ServerGroupID)
		if err != nil {
			return invalid("forward", t.ServerGroupID, "no such server group")
		}
		if seen[sg.ID] {
			return invalid("forward", sg.Name, "the server group is listed twice")
		}
		seen[sg.ID] = true
		if t.Weight < 0 || t.Weight > MaxForwardWeight {
			return invalid("forward.weight", t.Weight, "the weight of server group %s must be 0-%d", sg.Name, MaxForwardWeight)
		}
		total += t.Weight
		if grpc && sg.Protocol != ProtocolGRPC {
			return invalid("forward", sg.Name, "server group %s is %s, and this listener carries gRPC: a rule forwards to gRPC server groups", sg.Name, sg.Protocol)
		}
		if !grpc && sg.Protocol == ProtocolGRPC {
			return invalid("forward", sg.Name, "server group %s is gRPC, and this listener carries HTTP: a rule forwards to HTTP or HTTPS server groups", sg.Name)
		}
	}
	if total == 0 {
		return invalid("forward.weight", 0, "the weights add up to 0: give at least one group a weight above 0")
	}
	return nil
}

func (f *FixedResponse) validate(grpc bool) error {
	if grpc {
		if f.GRPCStatus == nil || f.HTTPCode != 0 || f.ContentType != "" || f.Body != "" {
			return invalid("fixedResponse", f.describe(), "this listener carries gRPC: answer with grpc-status=CODE[,message=TEXT]")
		}
		if code := *f.GRPCStatus; code < 0 || code > MaxGRPCStatusCode {
			return invalid("fixedResponse.grpcStatus", code, "a gRPC status code is 0-%d", MaxGRPCStatusCode)
		}
		if len(f.Message) > MaxFixedMessageLength || !printable(f.Message) {
			return invalid("fixedResponse.message", f.Message, "a message is at most %d printable ASCII characters", MaxFixedMessageLength)
		}
		return nil
	}
	if f.GRPCStatus != nil || f.Message != "" {
		return invalid("fixedResponse", f.describe(), "this listener carries HTTP: answer with code=NNN[,content-type=TYPE,body=TEXT]")
	}
	if f.HTTPCode < 200 || f.HTTPCode > 599 || f.HTTPCode/100 == 3 {
		return invalid("fixedResponse.httpCode", f.HTTPCode, "must be a 2xx, 4xx or 5xx status")
	}
	if !slices.Contains(FixedContentTypes, f.ContentType) {
		return invalid("fixedResponse.contentType", f.ContentType, "must be one of %s", strings.Join(FixedContentTypes, ", "))
	}
	if len(f.Body) > MaxFixedResponseBytes || !printable(strings.NewReplacer("\n", "", "\t", "").Replace(f.Body)) {
		return invalid("fixedResponse.body", f.Body, "a body is at most %d ASCII characters", MaxFixedResponseBytes)
	}
	return nil
}

// FixedContentTypes are the content types a fixed HTTP response may have, as the cloud's.
var FixedContentTypes = []string{"text/plain", "text/css", "text/html", "application/javascript", "application/json"}

func (f *FixedResponse) describe() string {
	if f.GRPCStatus != nil {
		return fmt.Sprintf("grpc-status=%d", *f.GRPCStatus)
	}
	return fmt.Sprintf("code=%d", f.HTTPCode)
}

// Validate checks a condition: its type, key and values in the cloud's character sets and
// lengths.
func (c *RuleCondition) Validate() error {
	if !slices.Contains(ConditionTypes, c.Type) {
		return invalid("conditions", c.Type, "unknown condition type: must be one of %s", strings.Join(ConditionTypes, ", "))
	}
	field := "conditions." + c.Type
	if len(c.Values) == 0 {
		return invalid(field, "", "a condition needs at least one value")
	}
	limit := MaxConditionValues
	if c.Type == CondSourceIP {
		limit = MaxSourceIPValues
	}
	if len(c.Values) > limit {
		return invalid(field, fmt.Sprintf("%d values", len(c.Values)), "a %s condition has at most %d values", c.Type, limit)
	}
	switch c.Type {
	case CondHeader:
		if err := validateHeaderKey(field, c.Key); err != nil {
			return err
		}
		if k := strings.ToLower(c.Key); k == "host" || k == "cookie" {
			return invalid(field, c.Key, "use a host or cookie condition for the %s header", k)
		}
	case CondQueryString, CondCookie:
		if len(c.Key) < 1 || len(c.Key) > MaxQueryOrCookieKey || !matchValueChars(c.Key, c.Type, true) {
			return invalid(field, c.Key, "a %s name is 1-%d printable characters without uppercase letters, spaces or %s", queryOrCookie(c.Type), MaxQueryOrCookieKey, bannedChars(c.Type, true))
		}
	default:
		if c.Key != "" {
			return invalid(field, c.Key, "a %s condition takes no key", c.Type)
		}
	}
	for _, v := range c.Values {
		if err := c.validateValue(field, v); err != nil {
			return err
		}
	}
	return nil
}

func (c *RuleCondition) validateValue(field, v string) error {
	switch c.Type {
	case CondHost:
		if !validHostPattern(v) {
			return invalid(field, v, "a host is 3-%d lowercase letters, digits, '-', '.', '*' or '?', with at least one '.', not starting or ending with '.', and a last label of letters or wildcards", MaxPathOrHostLength)
		}
	case CondPath:
		if len(v) < 1 || len(v) > MaxPathOrHostLength || v[0] != '/' || strings.ContainsFunc(v, func(r rune) bool { return !pathChar(r) }) {
			return invalid(field, v, "a path is 1-%d characters starting with '/': letters, digits, '*', '?' and $-_.+/&~@:", MaxPathOrHostLength)
		}
	case CondHeader:
		if len(v) < 1 || len(v) > MaxHeaderValueLength || !printable(v) || strings.TrimSpace(v) != v {
			return invalid(field, v, "a header value is 1-%d printable ASCII characters, not starting or ending with a space", MaxHeaderValueLength)
		}
	case CondQueryString, CondCookie:
		maxLen := MaxQueryValueLength
		if c.Type == CondCookie {
			maxLen = MaxCookieValueLength
		}
		if len(v) < 1 || len(v) > maxLen || !matchValueChars(v, c.Type, false) {
			return invalid(field, v, "a %s value is 1-%d printable characters without uppercase letters, spaces or %s", queryOrCookie(c.Type), maxLen, bannedChars(c.Type, false))
		}
	case CondMethod:
		if !slices.Contains(RuleMethods, v) {
			return invalid(field, v, "a method is one of %s", strings.Join(RuleMethods, ", "))
		}
	case CondSourceIP:
		if _, err := ParseSourcePrefix(v); err != nil {
			return invalid(field, v, "a source is an IP address or a CIDR range, such as 10.0.0.0/8 or ::1")
		}
	}
	return nil
}

// ConditionTypes lists the condition types.
var ConditionTypes = []string{CondHost, CondPath, CondHeader, CondMethod, CondQueryString, CondCookie, CondSourceIP}

// RuleMethods are the HTTP methods a method condition may name, as the cloud's.
var RuleMethods = []string{"HEAD", "GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE"}

// ParseSourcePrefix reads an IP address (a single address) or a CIDR range.
func ParseSourcePrefix(v string) (netip.Prefix, error) {
	if ip, err := netip.ParseAddr(v); err == nil && ip.Zone() == "" {
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return p, err
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func queryOrCookie(condType string) string {
	if condType == CondCookie {
		return "cookie"
	}
	return "query parameter"
}

func pathChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("$-_.+/&~@:*?", r)
}

func bannedChars(condType string, key bool) string {
	if condType == CondCookie {
		return `; # [ ] { } \ | < > & "`
	}
	if key {
		return `# [ ] { } \ | < > & "`
	}
	return `# [ ] { } \ | < > &`
}

func matchValueChars(v, condType string, key bool) bool {
	banned := strings.ReplaceAll(bannedChars(condType, key), " ", "")
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c > '~' || c >= 'A' && c <= 'Z' || strings.IndexByte(banned, c) >= 0 {
			return false
		}
	}
	return true
}

// validHostPattern checks a host condition value: the cloud's character set and shape.
func validHostPattern(v string) bool {
	if len(v) < 3 || len(v) > MaxPathOrHostLength || !strings.Contains(v, ".") || v[0] == '.' || v[len(v)-1] == '.' {
		return false
	}
	labels := strings.Split(v, ".")
	for i, label := range labels {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			last := i == len(labels)-1
			letter := r >= 'a' && r <= 'z' || r == '*' || r == '?'
			if !letter && (last || !(r >= '0' && r <= '9' || r == '-')) {
				return false
			}
		}
	}
	return true
}

func validateHeaderKey(field, key string) error {
	if len(key) < 1 || len(key) > MaxHeaderKeyLength || strings.ContainsFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) {
		return invalid(field, key, "a header name is 1-%d letters, digits, '-' or '_'", MaxHeaderKeyLength)
	}
	return nil
}

// reservedHeaders are request headers a rule may not insert or remove: the protocol's own,
// hop-by-hop fields, and what albctl sets itself.
var reservedHeaders = []string{
	"host", "authority", "connection", "upgrade", "te", "keep-alive", "proxy-connection",
	"content-length", "transfer-encoding", "content-type", "cookie",
	"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-host",
}

// ValidateHeaderChange checks the name of a header a rule inserts or removes. Names are
// lowercase, as HTTP/2 sends them.
func ValidateHeaderChange(field, key string) error {
	if strings.HasPrefix(key, ":") {
		return invalid(field, key, "pseudo-headers such as :path and :authority are the protocol's own: a rule may not change them")
	}
	if err := validateHeaderKey(field, key); err != nil {
		return err
	}
	if key != strings.ToLower(key) {
		return invalid(field, key, "write header names in lowercase, as HTTP/2 sends them")
	}
	if slices.Contains(reservedHeaders, key) || strings.HasPrefix(key, "grpc-") {
		return invalid(field, key, "albctl or the protocol sets this header: a rule may not change host, authority, cookie, content-type, hop-by-hop fields, grpc-* or the x-forwarded-* albctl sets")
	}
	return nil
}
