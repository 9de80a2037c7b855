package provider

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// Every example and module is valid HCL for this provider: terraform init
// (offline, with the provider just built) and terraform validate pass, and
// terraform fmt has nothing to change. The docs are generated from these
// examples, so none of them can rot.
func TestExamplesAndModulesValidate(t *testing.T) {
	tf := testenv.StartTerraform(t)
	root := testenv.RepoRoot()
	work := t.TempDir()
	for _, d := range []string{"examples", "modules"} {
		if err := os.CopyFS(filepath.Join(work, d), os.DirFS(filepath.Join(root, d))); err != nil {
			t.Fatal(err)
		}
	}
	var dirs []string
	for _, pattern := range []string{"examples/*/*.tf", "examples/*/*/*.tf", "modules/*/*.tf"} {
		files, _ := filepath.Glob(filepath.Join(work, pattern))
		for _, f := range files {
			if d := filepath.Dir(f); len(dirs) == 0 || dirs[len(dirs)-1] != d {
				dirs = append(dirs, d)
			}
		}
	}
	if len(dirs) < 12 {
		t.Fatalf("found only %d example and module folders", len(dirs))
	}
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("terraform", args...)
		cmd.Dir = dir
		cmd.Env = tf.Environ(map[string]string{"TF_DATA_DIR": filepath.Join(dir, ".terraform")})
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: terraform %s: %v\n%s", strings.TrimPrefix(dir, work+"/"), strings.Join(args, " "), err, out)
		}
	}
	run(work, "fmt", "-check", "-recursive", "-diff")
	for _, dir := range dirs {
		// Snippets for the docs leave out the terraform block; give them
		// the provider's source as a user's configuration would.
		if !declaresProvider(t, dir) {
			req := "terraform {\n  required_providers {\n    rdsgate = { source = \"rdsgate/rdsgate\" }\n  }\n}\n"
			if err := os.WriteFile(filepath.Join(dir, "zz_required_providers.tf"), []byte(req), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Run(strings.TrimPrefix(dir, work+"/"), func(t *testing.T) {
			run(dir, "init", "-backend=false", "-input=false", "-no-color")
			run(dir, "validate", "-no-color")
		})
	}
}

func declaresProvider(t *testing.T, dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "required_providers") {
			return true
		}
	}
	return false
}

// TestReadmeHCLIsFormatted: the HCL in the READMEs that CI cannot validate
// (the EC2 Auto Scaling example needs the AWS provider, which cannot be
// installed offline) is at least valid, formatted HCL.
func TestReadmeHCLIsFormatted(t *testing.T) {
	root := testenv.RepoRoot()
	var files []string
	for _, pattern := range []string{"*.md", "*/README.md", "modules/*/README.md"} {
		found, _ := filepath.Glob(filepath.Join(root, pattern))
		files = append(files, found...)
	}
	blocks := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rest := string(data)
		for {
			_, after, ok := strings.Cut(rest, "```hcl\n")
			if !ok {
				break
			}
			block, tail, _ := strings.Cut(after, "```")
			rest = tail
			blocks++
			cmd := exec.Command("terraform", "fmt", "-no-color", "-")
			cmd.Stdin = strings.NewReader(block)
			out, err := cmd.Output()
			if err != nil {
				t.Errorf("%s: an hcl block is not valid HCL: %v\n%s", strings.TrimPrefix(f, root+"/"), err, block)
				continue
			}
			if string(out) != block {
				t.Errorf("%s: an hcl block is not formatted as terraform fmt would:\n%s", strings.TrimPrefix(f, root+"/"), out)
			}
		}
	}
	if blocks < 3 {
		t.Fatalf("found %d hcl blocks in %d READMEs", blocks, len(files))
	}
}
