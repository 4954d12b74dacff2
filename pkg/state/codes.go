package state

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Limits of the health-check code lists, as the cloud's.
const (
	MaxGRPCCode   = 99
	MaxCodeRanges = 20
)

// CodeSet is a set of gRPC status codes from 0 to 99.
type CodeSet struct {
	bits [2]uint64
}

// Contains reports whether the code is in the set.
func (c CodeSet) Contains(code int) bool {
	if code < 0 || code > MaxGRPCCode {
		return false
	}
	return c.bits[code/64]&(1<<(code%64)) != 0
}

func (c *CodeSet) add(code int) { c.bits[code/64] |= 1 << (code % 64) }

// String writes the set in its shortest form, such as "0-5,12".
func (c CodeSet) String() string {
	var parts []string
	for lo := 0; lo <= MaxGRPCCode; lo++ {
		if !c.Contains(lo) {
			continue
		}
		hi := lo
		for hi+1 <= MaxGRPCCode && c.Contains(hi+1) {
			hi++
		}
		if hi == lo {
			parts = append(parts, strconv.Itoa(lo))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", lo, hi))
		}
		lo = hi
	}
	return strings.Join(parts, ",")
}

// ParseGRPCCodes reads a list of gRPC status codes and ranges, such as "12", "0,12" or "0-5,12".
func ParseGRPCCodes(s string) (CodeSet, error) {
	var set CodeSet
	items := strings.Split(s, ",")
	if strings.TrimSpace(s) == "" {
		return set, fmt.Errorf("no codes: give codes 0-%d as a list or ranges, such as 12 or 0-5,12", MaxGRPCCode)
	}
	if len(items) > MaxCodeRanges {
		return set, fmt.Errorf("%d items: at most %d codes or ranges", len(items), MaxCodeRanges)
	}
	for _, item := range items {
		item = strings.TrimSpace(item)
		loText, hiText, isRange := strings.Cut(item, "-")
		lo, err := parseCode(loText)
		if err != nil {
			return set, err
		}
		hi := lo
		if isRange {
			if hi, err = parseCode(hiText); err != nil {
				return set, fmt.Errorf("in range %q: %v", item, err)
			}
			if hi < lo {
				return set, fmt.Errorf("%q: range runs backwards", item)
			}
		}
		for code := lo; code <= hi; code++ {
			set.add(code)
		}
	}
	return set, nil
}

func parseCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	if n < 0 || n > MaxGRPCCode {
		return 0, fmt.Errorf("code %d out of range 0-%d", n, MaxGRPCCode)
	}
	return n, nil
}

// HTTPCodeClasses are the classes an HTTP health check may count as healthy.
var HTTPCodeClasses = []string{"http_2xx", "http_3xx", "http_4xx", "http_5xx"}

// ParseHTTPCodes reads a list of HTTP status classes, such as "http_2xx,http_3xx", and returns it
// sorted without repeats.
func ParseHTTPCodes(s string) (string, error) {
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.ToLower(strings.TrimSpace(item))
		known := false
		for _, class := range HTTPCodeClasses {
			known = known || item == class
		}
		if !known {
			return "", fmt.Errorf("%q is not one of %s", item, strings.Join(HTTPCodeClasses, ", "))
		}
		seen[item] = true
	}
	out := make([]string, 0, len(seen))
	for class := range seen {
		out = append(out, class)
	}
	sort.Strings(out)
	return strings.Join(out, ","), nil
}

// HTTPCodeAllowed reports whether an HTTP status matches one of the classes in codes.
func HTTPCodeAllowed(codes string, status int) bool {
	class := fmt.Sprintf("http_%dxx", status/100)
	for _, c := range strings.Split(codes, ",") {
		if c == class {
			return true
		}
	}
	return false
}
