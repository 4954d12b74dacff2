package etcdstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// diagnose dials each endpoint as the client would, to say why etcd did not answer: a refused
// connection, or TLS that one side refuses.
func diagnose(endpoints []string, tlsConfig *tls.Config, timeout time.Duration) error {
	var errs causes
	for _, ep := range endpoints {
		if err := dial(ep, tlsConfig, timeout); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// causes are the endpoints' errors on one line, where errors.Join would take several.
type causes []error

func (c causes) Error() string {
	parts := make([]string, len(c))
	for i, err := range c {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (c causes) Unwrap() []error { return c }

func dial(endpoint string, tlsConfig *tls.Config, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", endpoint, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if tlsConfig == nil {
		// Only to learn whether etcd expects TLS: nothing is sent over this connection.
		probe := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if probe.Handshake() == nil {
			return errors.New("etcd expects TLS: give its CA certificate, and a client certificate if it asks for one")
		}
		return nil
	}
	cfg := tlsConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(endpoint)
	}
	tc := tls.Client(conn, cfg)
	if err := tc.Handshake(); err != nil {
		var header tls.RecordHeaderError
		if errors.Is(err, io.EOF) || errors.As(err, &header) {
			return fmt.Errorf("TLS handshake: %w: etcd does not serve TLS there", err)
		}
		return err
	}
	// Under TLS 1.3 the server checks the client's certificate after the client has finished
	// its handshake, and a refusal arrives with the first read.
	if _, err := tc.Read(make([]byte, 1)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return nil
}
