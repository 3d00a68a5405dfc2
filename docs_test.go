package ldapauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldapauth/ldapauth"
)

// TestDocs keeps README.md and docs/*.md true to the code:
//
//   - every ```sh, ```bash or ```env block that sets LDAP_* variables loads
//     with LoadConfig (and passes ValidateSync when it sets the sync account);
//     a block showing a mistake is marked on the line before its fence with
//     <!-- doccheck: error VAR... --> and must fail with ErrConfig naming each
//     VAR. A block without LDAP_AUTH_URL is a fragment, loaded with a
//     placeholder server; a CA file path is the reader's, replaced by a CA the
//     test makes;
//   - every ```go block appears line for line (indentation aside) in a
//     function of a _test.go file of the repository (an Example, normally
//     in docs_example_test.go), so it compiles with the tests;
//   - every relative link points to an existing file, and its #anchor to a
//     heading of the target;
//   - every Go identifier README.md names in code spans exists in the package.
func TestDocs(t *testing.T) {
	docs := docFiles(t)
	t.Run("EnvBlocks", func(t *testing.T) {
		ca := writeTestCA(t)
		n := 0
		for _, d := range docs {
			for _, b := range d.blocks {
				if checkEnvBlock(t, d.path, b, ca) {
					n++
				}
			}
		}
		if n == 0 {
			t.Fatal("no env block found: the parser is broken")
		}
	})
	t.Run("GoSnippets", func(t *testing.T) {
		funcs := testFuncs(t)
		n := 0
		for _, d := range docs {
			for _, b := range d.blocks {
				if b.lang != "go" {
					continue
				}
				n++
				if !snippetInFuncs(b.lines, funcs) {
					t.Errorf("%s:%d: this go snippet is in no function of a _test.go file: put it, unchanged, in an Example (docs_example_test.go) so it compiles", d.path, b.line)
				}
			}
		}
		if n == 0 {
			t.Fatal("no go snippet found: the parser is broken")
		}
	})
	t.Run("Links", func(t *testing.T) {
		for _, d := range docs {
			checkLinks(t, d)
		}
	})
	t.Run("READMEIdentifiers", func(t *testing.T) {
		checkIdentifiers(t, docs[0])
	})
}

type docFile struct {
	path   string   // relative to the repository root, slash-separated
	lines  []string // the whole file
	blocks []fence
}

type fence struct {
	lang   string
	line   int      // of the opening fence, 1-based
	lines  []string // between the fences
	marker string   // the doccheck directive on the line before, if any
}

var markerRE = regexp.MustCompile(`^<!--\s*doccheck:\s*(.*?)\s*-->$`)

func docFiles(t *testing.T) []docFile {
	paths := []string{"README.md"}
	more, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	paths = append(paths, more...)
	var docs []docFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d := docFile{path: filepath.ToSlash(p), lines: strings.Split(string(data), "\n")}
		var cur *fence
		for i, l := range d.lines {
			if !strings.HasPrefix(l, "```") {
				if cur != nil {
					cur.lines = append(cur.lines, l)
				}
				continue
			}
			if cur != nil {
				d.blocks = append(d.blocks, *cur)
				cur = nil
				continue
			}
			cur = &fence{lang: strings.TrimSpace(strings.TrimPrefix(l, "```")), line: i + 1}
			if i > 0 {
				if m := markerRE.FindStringSubmatch(strings.TrimSpace(d.lines[i-1])); m != nil {
					cur.marker = m[1]
				}
			}
		}
		if cur != nil {
			t.Errorf("%s:%d: code fence never closed", d.path, cur.line)
		}
		docs = append(docs, d)
	}
	return docs
}

// checkEnvBlock loads one block; it reports whether the block was an env
// block at all.
func checkEnvBlock(t *testing.T, path string, b fence, caFile string) bool {
	var env map[string]string
	var err error
	switch b.lang {
	case "env":
		env, err = parseEnvFile(b.lines)
	case "sh", "bash", "shell":
		env, err = parseShell(b.lines)
	default:
		if b.marker != "" {
			t.Errorf("%s:%d: doccheck marker on a %q block, which is not checked", path, b.line, b.lang)
		}
		return false
	}
	where := fmt.Sprintf("%s:%d", path, b.line)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return true
	}
	ldap := false
	for k := range env {
		ldap = ldap || strings.HasPrefix(k, "LDAP_")
	}
	if !ldap {
		if b.marker != "" {
			t.Errorf("%s: doccheck marker on a block without LDAP_ variables", where)
		}
		return false
	}
	if _, ok := env["LDAP_AUTH_URL"]; !ok {
		env["LDAP_AUTH_URL"] = "ldaps://ldap.example.com" // a fragment
	}
	if _, ok := env["LDAP_AUTH_TLS_CA_FILE"]; ok {
		env["LDAP_AUTH_TLS_CA_FILE"] = caFile
	}
	cfg, err := ldapauth.LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err == nil && env["LDAP_SYNC_USER_USERNAME"] != "" {
		err = cfg.ValidateSync()
	}
	want, isErr := strings.CutPrefix(b.marker, "error")
	switch {
	case b.marker != "" && !isErr:
		t.Errorf("%s: unknown doccheck directive %q (want: error VAR...)", where, b.marker)
	case isErr:
		if !errors.Is(err, ldapauth.ErrConfig) {
			t.Errorf("%s: the block is marked as a mistake, but loads without a configuration error (got %v)", where, err)
			break
		}
		for _, v := range strings.Fields(want) {
			if !strings.Contains(err.Error(), v) {
				t.Errorf("%s: the error does not name %s: %v", where, v, err)
			}
		}
	case err != nil:
		t.Errorf("%s: the block does not load: %v", where, err)
	}
	return true
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseEnvFile reads a block as docker --env-file and systemd read them:
// NAME=value lines, taken verbatim, and # comment lines.
func parseEnvFile(lines []string) (map[string]string, error) {
	env := map[string]string{}
	for i, l := range lines {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || !envNameRE.MatchString(k) {
			return nil, fmt.Errorf("line %d of the block is not NAME=value: %q", i+1, l)
		}
		env[k] = v
	}
	return env, nil
}

// parseShell collects the NAME=value assignments that begin the commands of
// a shell block (export included), with the shell's quoting, continuation
// lines and comments.
func parseShell(lines []string) (map[string]string, error) {
	env := map[string]string{}
	joined := strings.ReplaceAll(strings.Join(lines, "\n"), "\\\n", "")
	for _, l := range strings.Split(joined, "\n") {
		words, err := shellWords(l)
		if err != nil {
			return nil, fmt.Errorf("%v in %q", err, l)
		}
		if len(words) > 0 && words[0] == "export" {
			words = words[1:]
		}
		for _, w := range words {
			k, v, ok := strings.Cut(w, "=")
			if !ok || !envNameRE.MatchString(k) {
				break
			}
			env[k] = v
		}
	}
	return env, nil
}

func shellWords(line string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, cur.String()), false
				cur.Reset()
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '\'' || c == '"':
			end := strings.IndexByte(line[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unclosed quote")
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// testFuncs returns the source lines of every function of every _test.go
// file of the repository.
func testFuncs(t *testing.T) [][]string {
	var funcs [][]string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		lines := strings.Split(string(src), "\n")
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok {
				funcs = append(funcs, lines[fset.Position(fn.Pos()).Line-1:fset.Position(fn.End()).Line])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return funcs
}

// snippetInFuncs reports whether the snippet's lines are a run of lines of
// one function, each indented by the same number of extra tabs.
func snippetInFuncs(snippet []string, funcs [][]string) bool {
	for len(snippet) > 0 && strings.TrimSpace(snippet[len(snippet)-1]) == "" {
		snippet = snippet[:len(snippet)-1]
	}
	if len(snippet) == 0 {
		return false
	}
	for _, fn := range funcs {
	start:
		for i := range fn {
			indent, ok := strings.CutSuffix(fn[i], snippet[0])
			if !ok || strings.Trim(indent, "\t") != "" || i+len(snippet) > len(fn) {
				continue
			}
			for j, l := range snippet {
				if fn[i+j] != indent+l && !(l == "" && fn[i+j] == "") {
					continue start
				}
			}
			return true
		}
	}
	return false
}

var (
	linkRE    = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)
	codeRE    = regexp.MustCompile("`[^`]*`")
	slugDrop  = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	headingRE = regexp.MustCompile(`^#{1,6} +(.*?) *#*$`)
)

func checkLinks(t *testing.T, d docFile) {
	inFence := false
	for i, l := range d.lines {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		if inFence {
			continue
		}
		for _, m := range linkRE.FindAllStringSubmatch(codeRE.ReplaceAllString(l, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := d.path
			if file != "" {
				path = filepath.ToSlash(filepath.Join(filepath.Dir(d.path), file))
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s:%d: link to %s: no such file", d.path, i+1, target)
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(path, ".md") {
				t.Errorf("%s:%d: link to %s: an anchor in a file that is not markdown", d.path, i+1, target)
				continue
			}
			if !slices.Contains(anchors(t, path), anchor) {
				t.Errorf("%s:%d: link to %s: %s has no heading with that anchor", d.path, i+1, target, path)
			}
		}
	}
}

// anchors returns the anchors GitHub makes for the headings of a markdown
// file: lower case, punctuation dropped, spaces as hyphens, -1, -2... for
// repeats.
func anchors(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	seen := map[string]int{}
	inFence := false
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		m := headingRE.FindStringSubmatch(l)
		if inFence || m == nil {
			continue
		}
		slug := strings.ReplaceAll(slugDrop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")
		if n := seen[slug]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", slug, n))
		} else {
			out = append(out, slug)
		}
		seen[slug]++
	}
	return out
}

var (
	goSpanRE      = regexp.MustCompile(`^\*?([A-Z][A-Za-z0-9]*(?:\.[A-Z][A-Za-z0-9]*)?)(?:\(.*\))?$`)
	qualifiedRE   = regexp.MustCompile(`\bldapauth\.([A-Za-z_][A-Za-z0-9_]*)`)
	identifierDoc = "README.md"
)

// checkIdentifiers checks that the Go names README.md mentions (code spans
// such as `Config.SearchThenBind`, `*TLSError`, `Stats()`, and ldapauth.X
// anywhere) are exported names, fields or methods of the package.
func checkIdentifiers(t *testing.T, d docFile) {
	if d.path != identifierDoc {
		t.Fatalf("first doc is %s", d.path)
	}
	names := packageNames(t)
	check := func(line int, name string) {
		if !names[name] {
			t.Errorf("%s:%d: %s names %q, which the package does not have", d.path, line, d.path, name)
		}
	}
	inFence := false
	for i, l := range d.lines {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		for _, m := range qualifiedRE.FindAllStringSubmatch(l, -1) {
			check(i+1, m[1])
		}
		if inFence {
			continue
		}
		for _, span := range codeRE.FindAllString(l, -1) {
			m := goSpanRE.FindStringSubmatch(strings.Trim(span, "`"))
			if m == nil || strings.ToUpper(m[1]) == m[1] {
				continue // not a Go name (LDAP_AUTH_URL, CN)
			}
			for _, part := range strings.Split(m[1], ".") {
				check(i+1, part)
			}
		}
	}
}

// packageNames returns the exported top-level names, struct fields and
// methods of the package in the current directory.
func packageNames(t *testing.T) map[string]bool {
	names := map[string]bool{}
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				names[n.Name.Name] = n.Name.IsExported()
			case *ast.TypeSpec:
				names[n.Name.Name] = n.Name.IsExported()
			case *ast.ValueSpec:
				for _, id := range n.Names {
					names[id.Name] = id.IsExported()
				}
			case *ast.Field:
				for _, id := range n.Names {
					names[id.Name] = names[id.Name] || id.IsExported()
				}
			}
			return true
		})
	}
	return names
}

// writeTestCA writes a self-signed CA certificate, standing for the reader's
// CA file in the docs' examples.
func writeTestCA(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "docs test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
