package web

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/templates"
)

// messageSources are the Go files outside this package whose texts pages
// show: the built-in factors' descriptions.
var messageSources = []string{"../signin/builtin.go", "../passkey/factor.go"}

var (
	templateMessage = regexp.MustCompile(`\$\.T "((?:[^"\\]|\\.)*)"`)
	goMessage       = regexp.MustCompile(`\btr\("((?:[^"\\]|\\.)*)"\)`)
	describedText   = regexp.MustCompile(`(?:Label|Prompt): "((?:[^"\\]|\\.)*)"`)
	placeholderRe   = regexp.MustCompile(`\{\{\s*\.([A-Za-z]+)\s*\}\}`)
)

// usedMessages are the message ids the pages can show: every $.T "…" of
// the templates, every tr("…") of this package, the factor descriptions.
func usedMessages(t *testing.T) map[string]bool {
	t.Helper()
	used := map[string]bool{}
	add := func(re *regexp.Regexp, src string) {
		for _, m := range re.FindAllStringSubmatch(src, -1) {
			id, err := strconv.Unquote(`"` + m[1] + `"`)
			if err != nil {
				t.Fatalf("message %s: %v", m[1], err)
			}
			used[id] = true
		}
	}
	pages, err := fs.Glob(templates.FS, "*.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		b, err := fs.ReadFile(templates.FS, p)
		if err != nil {
			t.Fatal(err)
		}
		add(templateMessage, string(b))
	}
	goFiles, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range goFiles {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		add(goMessage, string(b))
	}
	for _, p := range messageSources {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		add(describedText, string(b))
	}
	return used
}

func placeholders(s string) []string {
	var names []string
	for _, m := range placeholderRe.FindAllStringSubmatch(s, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestCatalogs fails when a page message is missing from a catalog, when a
// catalog holds a message no page uses, or when a translation drops or
// invents a placeholder.
func TestCatalogs(t *testing.T) {
	cat, err := i18n.Load(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	used := usedMessages(t)
	if len(used) < 100 {
		t.Fatalf("found only %d messages: the extraction is broken", len(used))
	}
	for _, lang := range i18n.Languages {
		t.Run("the "+lang+" catalog has exactly the messages the pages use", func(t *testing.T) {
			msgs := cat.Messages(lang)
			for _, id := range slices.Sorted(maps.Keys(used)) {
				text, ok := msgs[id]
				if !ok {
					t.Errorf("missing: %q", id)
					continue
				}
				if strings.TrimSpace(text) == "" {
					t.Errorf("empty: %q", id)
				}
				if got, want := placeholders(text), placeholders(id); !slices.Equal(got, want) {
					t.Errorf("%q: placeholders %v, want %v", id, got, want)
				}
			}
			for id := range msgs {
				if !used[id] {
					t.Errorf("unused: %q", id)
				}
			}
		})
	}
}
