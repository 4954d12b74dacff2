package serve

import (
	"context"
	"testing"
	"time"

	"github.com/albctl/albctl/internal/testutil"
	"github.com/albctl/albctl/pkg/echo"
	"github.com/albctl/albctl/pkg/echo/echopb"
	"github.com/albctl/albctl/pkg/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestRulesFromTheStateFile runs rules as the state file holds them: tried by priority, not by
// the order they were created in, and changed while serve runs.
func TestRulesFromTheStateFile(t *testing.T) {
	_, stable := testutil.StartEcho(t, echo.Options{Name: "stable"})
	_, canary := testutil.StartEcho(t, echo.Options{Name: "canary"})
	f := startServe(t, server(t, stable, 100))
	c := f.client(t)
	var listenerID string
	update := func(change func(*state.State) error) {
		t.Helper()
		if _, err := f.store.Update(context.Background(), change); err != nil {
			t.Fatal(err)
		}
	}
	update(func(s *state.State) error {
		listenerID = s.Listeners[0].ID
		sg := state.NewServerGroup("canary", state.ProtocolGRPC)
		if _, err := s.CreateServerGroup(sg); err != nil {
			return err
		}
		if _, err := s.AddServers("canary", []state.Server{server(t, canary, 100)}); err != nil {
			return err
		}
		// Created first, tried second.
		if _, err := s.CreateRule(state.Rule{Name: "retired", ListenerID: listenerID, Priority: 20,
			Conditions:    []state.RuleCondition{{Type: state.CondPath, Values: []string{"/albctl.echo.v1.Echo/*"}}},
			FixedResponse: &state.FixedResponse{GRPCStatus: new(int(codes.Unimplemented)), Message: "retired"}}); err != nil {
			return err
		}
		_, err := s.CreateRule(state.Rule{Name: "pin", ListenerID: listenerID, Priority: 10,
			Conditions: []state.RuleCondition{{Type: state.CondHeader, Key: "x-canary", Values: []string{"1"}}},
			Forward:    []state.ForwardTarget{{ServerGroupID: "canary", Weight: 100}}})
		return err
	})
	call := func(md ...string) (string, error) {
		ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), md...), 5*time.Second)
		defer cancel()
		res, err := c.UnaryEcho(ctx, &echopb.EchoRequest{Message: "hi"})
		if err != nil {
			return "", err
		}
		return res.Server, nil
	}
	testutil.WaitFor(t, "the rules to apply", func() bool {
		got, err := call("x-canary", "1")
		return err == nil && got == "canary"
	})
	_, err := call()
	if status.Code(err) != codes.Unimplemented || status.Convert(err).Message() != "retired" {
		t.Fatalf("call without x-canary: %v, want the fixed answer", err)
	}

	update(func(s *state.State) error {
		_, err := s.DeleteRule("retired")
		return err
	})
	testutil.WaitFor(t, "the rule's removal to apply", func() bool {
		got, err := call()
		return err == nil && got == "stable"
	})
}
