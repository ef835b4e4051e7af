package plugintool

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// templates holds one folder per language plus common/, the files every
// scaffold gets (go.mod, a test that builds the plugin and runs it in the
// host, a README). File names end in .tmpl so Go tooling ignores them here.
//
//go:embed templates
var templates embed.FS

var validName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// New scaffolds a bolt named name, written in lang, into the new directory
// dir (it must not exist, or be empty). The scaffold builds with Build, and
// `go test` in dir builds it from source and runs a batch through the Sluice
// host, so it needs the Sluice checkout that SDKRoot finds.
func New(lang Lang, name, dir string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("plugin name %q: use lower-case letters, digits, - and _, starting with a letter", name)
	}
	if _, err := ParseLang(string(lang)); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s already exists and is not empty", dir)
	}
	root, err := SDKRoot(filepath.Dir(dir))
	if err != nil {
		return err
	}
	asSDK, err := filepath.Rel(filepath.Join(dir, "assembly"), filepath.Join(root, "sdk", "assemblyscript"))
	if err != nil {
		return err
	}
	asSDKFromRoot, err := filepath.Rel(dir, filepath.Join(root, "sdk", "assemblyscript"))
	if err != nil {
		return err
	}
	requires, err := rootRequires(root)
	if err != nil {
		return err
	}
	data := map[string]string{
		"Requires":      requires,
		"Name":          name,
		"Module":        strings.ReplaceAll(name, "-", "_"),
		"Root":          root,
		"LangName":      langName(lang),
		"ASSDK":         filepath.ToSlash(asSDK),
		"ASSDKFromRoot": filepath.ToSlash(asSDKFromRoot),
	}
	files := map[string][]byte{}
	for _, sub := range []string{"common", string(lang)} {
		base := path.Join("templates", sub)
		err := fs.WalkDir(templates, base, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			text, err := templates.ReadFile(p)
			if err != nil {
				return err
			}
			t, err := template.New(p).Option("missingkey=error").Parse(string(text))
			if err != nil {
				return err
			}
			var out bytes.Buffer
			if err := t.Execute(&out, data); err != nil {
				return err
			}
			rel := strings.TrimSuffix(strings.TrimPrefix(p, base+"/"), ".tmpl")
			files[rel] = out.Bytes()
			return nil
		})
		if err != nil {
			return fmt.Errorf("scaffold templates: %w", err)
		}
	}
	// The harness test resolves the host's dependencies from the checkout's
	// go.sum, so it builds without network access.
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return fmt.Errorf("reading the Sluice checkout's go.sum: %w", err)
	}
	files["go.sum"] = sum
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// rootRequires lists the checkout's module requirements, one "\tpath
// version // indirect" line each, for the scaffold's go.mod.
func rootRequires(root string) (string, error) {
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("reading the Sluice checkout's go.mod: %w", err)
	}
	var b strings.Builder
	inBlock := false
	for _, line := range strings.Split(string(mod), "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "// indirect"))
		switch {
		case line == "require (":
			inBlock = true
			continue
		case inBlock && line == ")":
			inBlock = false
			continue
		case strings.HasPrefix(line, "require ") && !strings.HasSuffix(line, "("):
			line = strings.TrimPrefix(line, "require ")
		case !inBlock:
			continue
		}
		if f := strings.Fields(line); len(f) == 2 {
			fmt.Fprintf(&b, "\t%s %s // indirect\n", f[0], f[1])
		}
	}
	return b.String(), nil
}
