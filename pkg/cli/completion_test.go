package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestBashCompletionScript sources the checked-in bash completion in a real bash and completes
// IDs and names from a state file, as a user's shell does on TAB.
func TestBashCompletionScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash is not installed")
	}
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Skip("bash-completion is not installed (scripts/install-test-deps.sh installs it)")
	}
	path := walkthrough(t)
	groups := decode[[]struct{ ID string }](t, mustRun(t, path, "servergroup", "list", "-o", "json"))

	// The completion script runs `albctl __complete ...`: make this test binary that albctl.
	bin := t.TempDir()
	wrapper := "#!/bin/sh\nALBCTL_TEST_RUN_MAIN=1 exec " + os.Args[0] + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "albctl"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "..", "..", "completions", "albctl.bash")

	complete := func(line string) []string {
		t.Helper()
		words := strings.Fields(line)
		if strings.HasSuffix(line, " ") {
			words = append(words, "")
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		program := `source ` + bashCompletion + `
source "$SCRIPT"
compopt() { :; } # the builtin works only while bash itself runs a completion
COMP_WORDS=(` + strings.Join(quoted, " ") + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE='` + line + `'
COMP_POINT=${#COMP_LINE}
__start_albctl albctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", program)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "ALBCTL_STATE="+path, "SCRIPT="+script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				got = append(got, l)
			}
		}
		return got
	}

	got := complete("albctl servergroup get ")
	if strings.Join(got, " ") != groups[0].ID+" grpc-backends" {
		t.Fatalf("servergroup get <TAB> offered %q, want the group's ID and name", got)
	}
	if got := complete("albctl servergroup get grpc-"); strings.Join(got, " ") != "grpc-backends" {
		t.Fatalf("servergroup get grpc-<TAB> offered %q", got)
	}
	if got := complete("albctl listener create --cert "); len(got) != 2 || got[1] != "grpc-example" {
		t.Fatalf("--cert <TAB> offered %q", got)
	}
	if got := complete("albctl lb "); !strings.Contains(strings.Join(got, " "), "create") || !strings.Contains(strings.Join(got, " "), "delete") {
		t.Fatalf("lb <TAB> offered %q", got)
	}
}
