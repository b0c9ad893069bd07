package echo

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeShowsTheExamples keeps the README's go blocks, in order, the
// bodies of Example and ExampleClient_Events, so the code a reader copies is
// the code `go test` runs.
func TestReadmeShowsTheExamples(t *testing.T) {
	source, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	file, err := parser.ParseFile(token.NewFileSet(), "example_test.go", source, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]string{}
	for _, decl := range file.Decls {
		if fn, ok := decl.(*ast.FuncDecl); ok {
			bodies[fn.Name.Name] = string(source[fn.Body.Lbrace+1 : fn.Body.Rbrace-1])
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1)
	examples := []string{"Example", "ExampleClient_Events"}
	if len(blocks) != len(examples) {
		t.Fatalf("the README has %d go blocks; want %d, one per example", len(blocks), len(examples))
	}
	normalize := func(text string) string {
		var lines []string
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			lines = append(lines, strings.TrimSpace(line))
		}
		return strings.Join(lines, "\n")
	}
	for i, name := range examples {
		if got, want := normalize(string(blocks[i][1])), normalize(bodies[name]); got != want {
			t.Errorf("README block %d:\n%s\n\n%s body:\n%s", i+1, got, name, want)
		}
	}
}
