package admin_test

import (
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"minipush/internal/admin"
	"minipush/internal/dev/apispec"
	"minipush/internal/dev/samtemplate"
	"minipush/internal/dev/testenv"
)

// TestOpenAPIRoutes fails when a route of template.yaml or of the admin router has no
// operation in openapi.json, or the document describes a route neither has: the
// description cannot fall behind a new route. (That every documented status and body
// shape is really answered is checked on the running system: badinput's OpenAPI case.)
func TestOpenAPIRoutes(t *testing.T) {
	doc, err := apispec.Parse(admin.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, op := range doc.Operations() {
		documented[op] = true
	}
	tpl, err := samtemplate.ReadFile(filepath.Join(testenv.Root(), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const adminPrefix = "/v1/admin/"
	covered := map[string]bool{}
	for _, id := range tpl.FunctionIDs() {
		for name, ev := range tpl.Functions[id].Events {
			if ev.HTTPAPI == nil {
				continue
			}
			method, path := ev.HTTPAPI.Method, ev.HTTPAPI.Path
			if path == adminPrefix+"{proxy+}" {
				continue // the router's operations, below
			}
			probe := strings.Replace(path, "{proxy+}", "app.js", 1)
			op, ok := doc.Match(method, probe)
			if !ok {
				t.Errorf("template route %s %s (%s.%s) is not documented", method, path, id, name)
				continue
			}
			covered[op] = true
		}
	}
	router := routerOperations(t)
	if len(router) < 10 {
		t.Fatalf("found %d operations in admin.go's router: the parser no longer understands it", len(router))
	}
	for _, op := range router {
		m, rest, _ := strings.Cut(op, " ")
		probe := adminPrefix + strings.ReplaceAll(rest, "{}", "x1")
		key, ok := doc.Match(m, probe)
		if !ok || strings.Contains(key, "{file}") {
			t.Errorf("admin router operation %s /v1/admin/%s is not documented", m, rest)
			continue
		}
		covered[key] = true
		if !slices.Contains(doc.Statuses(key), 401) {
			t.Errorf("%s does not document 401, which every operator route answers without a token", key)
		}
	}
	for _, op := range slices.Sorted(maps.Keys(documented)) {
		if !covered[op] {
			t.Errorf("openapi.json documents %s, which neither template.yaml nor the admin router has", op)
		}
	}
}

// routerOperations reads admin.go's route switch: every case's path constraints
// (len(p) == N, p[i] == "lit", a nested switch on p[i]) and the methods it hands to
// h.methods, as "METHOD seg/{}/seg" ({} is any one segment).
func routerOperations(t *testing.T) []string {
	t.Helper()
	fset := gotoken.NewFileSet()
	f, err := parser.ParseFile(fset, "admin.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "route" {
			continue
		}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			sw, ok := n.(*ast.SwitchStmt)
			if !ok || sw.Tag != nil {
				return true
			}
			for _, c := range sw.Body.List {
				cc := c.(*ast.CaseClause)
				for _, e := range cc.List {
					n, segs := constraints(e)
					found := caseOps(cc.Body, n, segs)
					if len(found) == 0 {
						// A case this reader cannot follow (a sub-router, a range of lengths)
						// must not pass unchecked: document its operations and teach
						// routerOperations its shape.
						t.Errorf("admin.go:%d: cannot read the operations of this route case", fset.Position(cc.Pos()).Line)
					}
					ops = append(ops, found...)
				}
			}
			return false
		})
	}
	return ops
}

func constraints(e ast.Expr) (int, map[int]string) {
	segs := map[int]string{}
	n := 0
	var walk func(ast.Expr)
	walk = func(e ast.Expr) {
		b, ok := e.(*ast.BinaryExpr)
		if !ok {
			return
		}
		if b.Op == gotoken.LAND {
			walk(b.X)
			walk(b.Y)
			return
		}
		if b.Op != gotoken.EQL {
			return
		}
		lit, ok := b.Y.(*ast.BasicLit)
		if !ok {
			return
		}
		switch x := b.X.(type) {
		case *ast.CallExpr: // len(p) == N
			n, _ = strconv.Atoi(lit.Value)
		case *ast.IndexExpr: // p[i] == "lit"
			if i, ok := x.Index.(*ast.BasicLit); ok {
				k, _ := strconv.Atoi(i.Value)
				segs[k], _ = strconv.Unquote(lit.Value)
			}
		}
	}
	walk(e)
	return n, segs
}

func caseOps(body []ast.Stmt, n int, segs map[int]string) []string {
	var ops []string
	for _, st := range body {
		switch st := st.(type) {
		case *ast.ReturnStmt:
			for _, m := range methodsOf(st) {
				ops = append(ops, m+" "+pattern(n, segs))
			}
		case *ast.SwitchStmt: // switch p[i] { case "a", "b": return h.methods(...) }
			idx, ok := st.Tag.(*ast.IndexExpr)
			if !ok {
				continue
			}
			k, _ := strconv.Atoi(idx.Index.(*ast.BasicLit).Value)
			for _, c := range st.Body.List {
				cc := c.(*ast.CaseClause)
				for _, e := range cc.List {
					v, _ := strconv.Unquote(e.(*ast.BasicLit).Value)
					inner := maps.Clone(segs)
					inner[k] = v
					ops = append(ops, caseOps(cc.Body, n, inner)...)
				}
			}
		}
	}
	return ops
}

func methodsOf(ret *ast.ReturnStmt) []string {
	var ms []string
	ast.Inspect(ret, func(n ast.Node) bool {
		kv, ok := n.(*ast.KeyValueExpr)
		if !ok {
			return true
		}
		if sel, ok := kv.Key.(*ast.SelectorExpr); ok && strings.HasPrefix(sel.Sel.Name, "Method") {
			ms = append(ms, strings.ToUpper(strings.TrimPrefix(sel.Sel.Name, "Method")))
		}
		return true
	})
	return ms
}

func pattern(n int, segs map[int]string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = "{}"
		if v, ok := segs[i]; ok {
			parts[i] = v
		}
	}
	return strings.Join(parts, "/")
}
