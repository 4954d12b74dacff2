package state

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// ServerSpec is a server as given on the command line, "HOST:PORT[,weight=N][,description=TEXT]".
// HasWeight tells a weight given explicitly from the default.
type ServerSpec struct {
	Server
	HasWeight      bool
	HasDescription bool
}

// ParseServerSpec reads "HOST:PORT[,weight=N][,description=TEXT]". IPv6 hosts are bracketed:
// "[::1]:50051". The description, if any, must come last, since it may hold commas.
func ParseServerSpec(s string) (ServerSpec, error) {
	var spec ServerSpec
	hostPort, rest, _ := strings.Cut(s, ",")
	host, portText, err := net.SplitHostPort(strings.TrimSpace(hostPort))
	if err != nil {
		return spec, fmt.Errorf("%q is not HOST:PORT (bracket IPv6 hosts: [::1]:50051)", hostPort)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return spec, fmt.Errorf("port %q is not a number", portText)
	}
	spec.Address, spec.Port, spec.Weight = host, port, DefaultWeight
	for rest != "" {
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		key, value, ok := strings.Cut(item, "=")
		if !ok {
			return spec, fmt.Errorf("%q is not key=value (keys: weight, description)", item)
		}
		switch strings.TrimSpace(key) {
		case "weight":
			if spec.HasWeight {
				return spec, fmt.Errorf("weight given twice")
			}
			w, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil {
				return spec, fmt.Errorf("weight %q is not a whole number", value)
			}
			spec.Weight, spec.HasWeight = w, true
		case "description":
			spec.Description, spec.HasDescription = value+joinRest(rest), true
			rest = ""
		default:
			return spec, fmt.Errorf("unknown key %q (keys: weight, description)", key)
		}
	}
	return spec, nil
}

func joinRest(rest string) string {
	if rest == "" {
		return ""
	}
	return "," + rest
}

// HostPort returns the server's address as HOST:PORT, bracketing IPv6.
func (s Server) HostPort() string {
	return net.JoinHostPort(s.Address, strconv.Itoa(s.Port))
}
