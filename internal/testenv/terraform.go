package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// ProviderVersion is the version the locally built provider is mirrored as.
const ProviderVersion = "0.1.0"

// Terraform is the real terraform binary set up to use the locally built
// provider offline: a CLI configuration with a filesystem mirror (so
// `terraform init` finds it without the registry) and dev_overrides (so
// plan and apply run the binary just built, without a new init).
type Terraform struct {
	// RC is the CLI configuration file (TF_CLI_CONFIG_FILE).
	RC string
	// Env is what a terraform process needs besides the caller's environment.
	Env map[string]string
}

var (
	tfOnce sync.Once
	tfDir  string
	tfErr  error
)

// RepoRoot is the root of the rdsgate module.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// StartTerraform builds the provider once per test process and returns the
// configuration that makes terraform use it.
func StartTerraform(t T) *Terraform {
	t.Helper()
	if _, err := exec.LookPath("terraform"); err != nil {
		t.Fatalf("terraform is not on the PATH (.ci/run installs it): %v", err)
	}
	tfOnce.Do(func() {
		tfDir, tfErr = os.MkdirTemp("", "rdsgate-terraform-")
		if tfErr == nil {
			tfErr = WriteTerraformRC(tfDir)
		}
	})
	if tfErr != nil {
		t.Fatal(tfErr)
	}
	return TerraformAt(tfDir)
}

// TerraformAt is the Terraform set-up WriteTerraformRC wrote into dir.
func TerraformAt(dir string) *Terraform {
	rc := filepath.Join(dir, "terraformrc")
	return &Terraform{RC: rc, Env: map[string]string{
		"TF_CLI_CONFIG_FILE": rc, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
	}}
}

// WriteTerraformRC builds the provider into dir and writes dir/terraformrc;
// `make terraform-dev` uses it for people and the demo.
func WriteTerraformRC(dir string) error {
	binDir := filepath.Join(dir, "bin")
	mirror := filepath.Join(dir, "mirror", "registry.terraform.io", "rdsgate", "rdsgate", ProviderVersion, runtime.GOOS+"_"+runtime.GOARCH)
	for _, d := range []string{binDir, mirror} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	bin := filepath.Join(binDir, "terraform-provider-rdsgate")
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+ProviderVersion, "-o", bin, "./cmd/terraform-provider-rdsgate")
	build.Dir = RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the provider: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mirror, "terraform-provider-rdsgate_v"+ProviderVersion), data, 0o755); err != nil {
		return err
	}
	rc := fmt.Sprintf(`provider_installation {
  dev_overrides {
    "rdsgate/rdsgate" = %q
  }
  filesystem_mirror {
    path    = %q
    include = ["rdsgate/rdsgate"]
  }
  direct {
    exclude = ["rdsgate/rdsgate"]
  }
}
disable_checkpoint = true
`, binDir, filepath.Join(dir, "mirror"))
	return os.WriteFile(filepath.Join(dir, "terraformrc"), []byte(rc), 0o644)
}

// Environ returns os.Environ() with the Terraform settings and extra ones.
func (tf *Terraform) Environ(extra map[string]string) []string {
	env := os.Environ()
	for k, v := range tf.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}
