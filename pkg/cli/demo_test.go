package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the whole demo, whose backends and serve are this test binary run as albctl,
// then pastes the control-plane commands it printed into a real bash against a fresh state.
func TestDemo(t *testing.T) {
	t.Setenv("ALBCTL_TEST_RUN_MAIN", "1") // the processes demo starts run albctl's Main
	path := newState(t)
	r := run(t, path, "demo")
	if r.code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", r.code, r.out, r.err)
	}
	for _, want := range []string{
		"\n$ albctl servergroup create --name grpc-backends --protocol gRPC --health-check-codes 12",
		"\n$ albctl dns domain verify example.test\n",
		"\n$ albctl probe -insecure -v -d '{\"message\": \"hello\"}' grpc.example.test:",
		"Sent 1 request and received 1 response",
		"is unhealthy after",
		"demo finished: every step did what it should",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Count(r.out, "failed calls: 0\n") != 2 {
		t.Errorf("demo's bursts had failures:\n%s", r.out)
	}

	// The printed commands of step 2 are what a user pastes: run them in bash on a new state.
	section := r.out[strings.Index(r.out, "## 2."):strings.Index(r.out, "## 3.")]
	var script []string
	for _, line := range strings.Split(section, "\n") {
		if cmd, ok := strings.CutPrefix(line, "$ "); ok {
			script = append(script, cmd+" >/dev/null || exit 1")
		}
	}
	if len(script) != 5 {
		t.Fatalf("found %d commands in step 2, want 5:\n%s", len(script), section)
	}
	bin := t.TempDir()
	wrapper := "#!/bin/sh\nALBCTL_TEST_RUN_MAIN=1 exec " + os.Args[0] + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "albctl"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	fresh := newState(t)
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", strings.Join(script, "\n"))
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "ALBCTL_STATE="+fresh)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pasting step 2 into bash: %v\n%s\n%s", err, strings.Join(script, "\n"), out)
	}
	got := maskIDs(mustRun(t, fresh, "servergroup", "get", "grpc-backends", "-o", "json"))
	want := maskIDs(mustRun(t, path, "servergroup", "get", "grpc-backends", "-o", "json"))
	if got != want {
		t.Fatalf("the pasted commands made\n%s\nthe demo made\n%s", got, want)
	}
}
