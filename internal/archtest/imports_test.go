package archtest

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/rdsgate/rdsgate"

// rules maps a part of the module to the other parts it may import.
var rules = map[string][]string{
	"policies":  {},
	"bootstrap": {"policies"},
	"proxyd":    {},
	// The adapters share helpers under internal/ (proxyconf).
	"provider": {"policies", "bootstrap", "proxyd", "internal"},
	"cmd":      {"policies", "bootstrap", "proxyd", "provider", "internal"},
	"internal": {"policies", "bootstrap", "proxyd", "provider"},
	// test/ holds test infrastructure (the RDS emulator), the demo and
	// end-to-end tests, which drive every part.
	"test": {"policies", "bootstrap", "proxyd", "internal"},
	// bench/ drives the proxy and its baselines.
	"bench": {"proxyd", "internal", "test"},
}

// leaves are packages of the standard library's alone that every part may
// import: the wildcard matcher the planner and the proxy share.
var leaves = []string{module + "/internal/wildcard"}

func part(pkg string) string {
	p, _, _ := strings.Cut(strings.TrimPrefix(pkg, module+"/"), "/")
	return p
}

type pkg struct {
	path        string
	dir         string
	imports     []string
	testImports []string
}

// testenv starts real servers for tests; any part's tests may use it, and
// the emulators under test/.
const testenv = module + "/internal/testenv"

func testInfra(imp string) bool { return imp == testenv || strings.HasPrefix(imp, module+"/test/") }

// packages reads every package of the module with go/build, so the test
// cache notices when a file changes. Nested modules (test/) are skipped.
func packages(t *testing.T) []pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var out []pkg
	err = filepath.WalkDir(root, func(dir string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		name := d.Name()
		if dir != root && (strings.HasPrefix(name, ".") || name == "testdata") {
			return filepath.SkipDir
		}
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && dir != root {
			return filepath.SkipDir
		}
		p, err := build.ImportDir(dir, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, dir)
		out = append(out, pkg{path: module + "/" + filepath.ToSlash(rel), dir: dir,
			imports: p.Imports, testImports: slices.Concat(p.TestImports, p.XTestImports)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 3 {
		t.Fatalf("found only %d packages under %s", len(out), root)
	}
	return out
}

func TestPoliciesUsesTheStandardLibraryAlone(t *testing.T) {
	for _, p := range packages(t) {
		if part(p.path) != "policies" {
			continue
		}
		for _, imp := range p.imports {
			if strings.HasPrefix(imp, module+"/policies") || slices.Contains(leaves, imp) {
				continue
			}
			if bp, err := build.Import(imp, p.dir, build.FindOnly); err != nil || !bp.Goroot {
				t.Errorf("%s imports %s; policies must use the standard library alone", p.path, imp)
			}
		}
		// Its tests may use the test infrastructure that is itself made of
		// the standard library alone (the independent IAM model).
		for _, imp := range p.testImports {
			if strings.HasPrefix(imp, module+"/policies") || imp == module+"/test/iamcheck" {
				continue
			}
			if bp, err := build.Import(imp, p.dir, build.FindOnly); err != nil || !bp.Goroot {
				t.Errorf("%s imports %s; policies must use the standard library alone", p.path, imp)
			}
		}
	}
}

func TestDependencyDirection(t *testing.T) {
	for _, p := range packages(t) {
		from := part(p.path)
		allowed, ok := rules[from]
		if !ok {
			t.Errorf("package %s is outside the known parts; add it to the rules", p.path)
			continue
		}
		check := func(imp string, test bool) {
			if !strings.HasPrefix(imp, module+"/") || test && testInfra(imp) || slices.Contains(leaves, imp) {
				return
			}
			if to := part(imp); to != from && !slices.Contains(allowed, to) {
				t.Errorf("%s imports %s: %s may only import %v", p.path, imp, from, allowed)
			}
		}
		for _, imp := range p.imports {
			check(imp, false)
		}
		for _, imp := range p.testImports {
			check(imp, true)
		}
	}
}

func TestLeavesUseTheStandardLibraryAlone(t *testing.T) {
	found := 0
	for _, p := range packages(t) {
		if !slices.Contains(leaves, p.path) {
			continue
		}
		found++
		for _, imp := range p.imports {
			if bp, err := build.Import(imp, p.dir, build.FindOnly); err != nil || !bp.Goroot {
				t.Errorf("%s imports %s; a leaf every part may import must use the standard library alone", p.path, imp)
			}
		}
	}
	if found != len(leaves) {
		t.Errorf("found %d of the %d leaves %v", found, len(leaves), leaves)
	}
}
