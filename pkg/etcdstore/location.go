package etcdstore

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

const scheme = "etcd://"

// IsLocation reports whether loc names an etcd store rather than a file.
func IsLocation(loc string) bool { return strings.HasPrefix(loc, scheme) }

// ParseLocation splits etcd://HOST:PORT[,HOST:PORT...]/PREFIX into the endpoints and the key
// prefix. IPv6 hosts go in brackets, as in etcd://[::1]:2379/albctl/prod.
func ParseLocation(loc string) (endpoints []string, prefix string, err error) {
	rest, ok := strings.CutPrefix(loc, scheme)
	if !ok {
		return nil, "", fmt.Errorf("invalid etcd location %q: it must start with %s", loc, scheme)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if hosts == "" {
		return nil, "", fmt.Errorf("invalid etcd location %q: no endpoint, want %sHOST:PORT[,HOST:PORT...]/PREFIX", loc, scheme)
	}
	for _, ep := range strings.Split(hosts, ",") {
		if err := checkEndpoint(ep); err != nil {
			return nil, "", fmt.Errorf("invalid etcd location %q: %w", loc, err)
		}
		endpoints = append(endpoints, ep)
	}
	prefix = strings.TrimRight("/"+path, "/")
	if err := checkPrefix(prefix); err != nil {
		return nil, "", fmt.Errorf("invalid etcd location %q: %w", loc, err)
	}
	return endpoints, prefix, nil
}

func checkEndpoint(ep string) error {
	if ep == "" {
		return errors.New("empty endpoint between commas")
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		var addrErr *net.AddrError
		switch {
		case errors.As(err, &addrErr) && addrErr.Err == "missing port in address":
			return fmt.Errorf("endpoint %q has no port, want HOST:PORT", ep)
		case errors.As(err, &addrErr) && addrErr.Err == "too many colons in address":
			return fmt.Errorf("endpoint %q: an IPv6 address goes in brackets, as in [::1]:2379", ep)
		}
		return fmt.Errorf("endpoint %q: %v", ep, err)
	}
	if host == "" {
		return fmt.Errorf("endpoint %q has no host", ep)
	}
	if strings.HasPrefix(ep, "[") {
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil {
			return fmt.Errorf("endpoint %q: only an IPv6 address goes in brackets", ep)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("endpoint %q: port %q is not 1-65535", ep, port)
	}
	return nil
}

func checkPrefix(prefix string) error {
	switch {
	case prefix == "":
		return errors.New("no key prefix after the endpoints, such as /albctl/prod")
	case !strings.HasPrefix(prefix, "/"):
		return fmt.Errorf("key prefix %q must start with /", prefix)
	case strings.HasSuffix(prefix, "/"):
		return fmt.Errorf("key prefix %q must not end with /", prefix)
	}
	return nil
}
