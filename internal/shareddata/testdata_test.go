package shareddata

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A clone of a local checkout finds the data beside the checkout it was
// cloned from; a clone of a remote one does not look there.
func TestDirFollowsLocalOrigin(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	t.Setenv("PNAP_DATA", "")
	base := t.TempDir()
	orig, clone := filepath.Join(base, "work", "main"), filepath.Join(base, "elsewhere", "ci")
	data := filepath.Join(base, "work", "shared", "data")
	for _, d := range []string{orig, data, filepath.Dir(clone)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(orig, "go.mod"), []byte("module x\n"), 0o644)
	git := func(dir string, args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git(orig, "init", "-q")
	git(orig, "add", "go.mod")
	git(orig, "commit", "-q", "-m", "x")
	git(filepath.Dir(clone), "clone", "-q", orig, clone)

	wd, _ := os.Getwd()
	t.Cleanup(func() { os.Chdir(wd) })
	if err := os.Chdir(clone); err != nil {
		t.Fatal(err)
	}
	if got := Dir(); got != data {
		t.Fatalf("Dir() in a clone of %s = %q, want %q", orig, got, data)
	}
	git(clone, "remote", "set-url", "origin", "https://example.com/pnap.git")
	if got := Dir(); got != "" {
		t.Fatalf("Dir() with a remote origin = %q, want none", got)
	}
}
