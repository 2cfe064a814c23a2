package dbcache_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// maxExported bounds the exported identifiers of the package: it is the
// wrapper API alone (the booking domain lives in the examples module).
const maxExported = 30

// TestAPI_Size counts the exported identifiers of the package (top-level
// names, methods, struct fields and interface methods), so that the
// package stays the wrapper API.
func TestAPI_Size(t *testing.T) {
	t.Parallel()
	names := exportedNames(t, ".")
	t.Logf("%d exported identifiers: %s", len(names), strings.Join(names, " "))
	require.LessOrEqual(t, len(names), maxExported)
}

func exportedNames(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	require.NoError(t, err)
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		require.NoError(t, err)
		files = append(files, f)
	}
	require.NotEmpty(t, files)
	var out []string
	add := func(prefix string, id *ast.Ident) {
		if id.IsExported() {
			out = append(out, prefix+id.Name)
		}
	}
	for _, f := range files {
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				prefix := ""
				if d.Recv != nil {
					recv := recvName(d.Recv.List[0].Type)
					if !ast.IsExported(recv) {
						continue // not part of the API (an error type's Error, say)
					}
					prefix = recv + "."
				}
				add(prefix, d.Name)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						add("", s.Name)
						if !s.Name.IsExported() {
							continue
						}
						var fields *ast.FieldList
						switch ty := s.Type.(type) {
						case *ast.StructType:
							fields = ty.Fields
						case *ast.InterfaceType:
							fields = ty.Methods
						}
						if fields != nil {
							for _, fl := range fields.List {
								for _, n := range fl.Names {
									add(s.Name.Name+".", n)
								}
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							add("", n)
						}
					}
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func recvName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return recvName(e.X)
	case *ast.IndexExpr:
		return recvName(e.X)
	case *ast.IndexListExpr:
		return recvName(e.X)
	case *ast.Ident:
		return e.Name
	}
	return "?"
}
