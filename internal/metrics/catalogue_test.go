package metrics_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"minipush/internal/metrics"
)

// TestCatalogueEmitted checks that every metric the package declares (and the
// dashboard may draw) is recorded by some product code: a reference metrics.<Name> in
// a non-test file outside this package and outside internal/dev, which never ships.
func TestCatalogueEmitted(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // constant identifier -> metric name
	fset := token.NewFileSet()
	self, err := parser.ParseFile(fset, "metrics.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range self.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			for _, n := range spec.(*ast.ValueSpec).Names {
				if _, ok := metrics.Units[n.Name]; ok {
					names[n.Name] = n.Name
				}
			}
		}
	}
	if len(names) != len(metrics.Units) {
		t.Fatalf("%d metric constants for %d catalogued metrics", len(names), len(metrics.Units))
	}
	used := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == filepath.Join("internal", "dev") || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		if filepath.Dir(rel) == filepath.Join("internal", "metrics") {
			// The package's own recording code (Emitter.HTTP counts Requests) names the
			// constants bare; only uses inside function bodies count, not declarations.
			for _, decl := range f.Decls {
				if fn, ok := decl.(*ast.FuncDecl); ok && fn.Body != nil {
					ast.Inspect(fn.Body, func(n ast.Node) bool {
						if id, ok := n.(*ast.Ident); ok && names[id.Name] != "" {
							used[id.Name] = true
						}
						return true
					})
				}
			}
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "metrics" {
					used[sel.Sel.Name] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for c := range names {
		if !used[c] {
			t.Errorf("metrics.%s is declared but no function records it", c)
		}
	}
}
