package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateExportImport(t *testing.T) {
	from := walkthrough(t)
	mustRun(t, from, "rule", "create", "--listener", decode[[]struct{ ID string }](t, mustRun(t, from, "listener", "list", "-o", "json"))[0].ID,
		"--priority", "10", "--match", "header:x-canary=1", "--forward", "grpc-backends")
	exported := mustRun(t, from, "state", "export")
	if stored, _ := os.ReadFile(from); exported != string(stored) {
		t.Fatal("export differs from the stored document")
	}
	file := filepath.Join(t.TempDir(), "export.json")
	if err := os.WriteFile(file, []byte(exported), 0o600); err != nil {
		t.Fatal(err)
	}

	// Into an empty state, then the same document comes back out.
	to := newState(t)
	if out := mustRun(t, to, "state", "import", file); !strings.Contains(out, "imported "+file+" into "+to) {
		t.Fatalf("import said %q", out)
	}
	if got := mustRun(t, to, "state", "export"); got != exported {
		t.Fatalf("round trip changed the document:\n%s", got)
	}

	// A state that holds something is replaced only with --force.
	other := walkthrough(t)
	mustRun(t, other, "lb", "create", "--name", "second")
	before, _ := os.ReadFile(other)
	r := run(t, other, "state", "import", file)
	if r.code != ExitUsage || !strings.Contains(r.err, "already holds a configuration: give --force") {
		t.Fatalf("import over a state: exit %d %s", r.code, r.err)
	}
	if after, _ := os.ReadFile(other); !bytes.Equal(before, after) {
		t.Fatal("a refused import changed the state")
	}
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"--state", other, "state", "import", "--force", "-"}, IOStreams{In: strings.NewReader(exported), Out: &out, ErrOut: &errOut})
	if code != ExitOK || mustRun(t, other, "state", "export") != exported {
		t.Fatalf("import --force from stdin: exit %d %s", code, errOut.String())
	}

	// Documents albctl cannot use are refused and change nothing.
	before, _ = os.ReadFile(other)
	for name, doc := range map[string]string{
		"broken JSON":   `{"version": 1, "loadBalancers": [`,
		"unknown field": strings.Replace(exported, `"version": 1,`, `"version": 1, "extra": true,`, 1),
		"other version": strings.Replace(exported, `"version": 1,`, `"version": 2,`, 1),
		"bad reference": strings.Replace(exported, `"serverGroupId": "sgp-`, `"serverGroupId": "sgp-nope`, 1),
	} {
		bad := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		r := run(t, other, "state", "import", "--force", bad)
		if r.code != ExitError || !strings.Contains(r.err, bad+" cannot be imported: ") {
			t.Errorf("%s: exit %d %s", name, r.code, r.err)
		}
		if after, _ := os.ReadFile(other); !bytes.Equal(before, after) {
			t.Fatalf("%s: the refused import changed the state", name)
		}
	}
}
