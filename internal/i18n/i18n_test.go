package i18n_test

import (
	"slices"
	"testing"

	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/templates"
)

func load(t *testing.T) *i18n.Catalog {
	t.Helper()
	c, err := i18n.Load(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestChoose(t *testing.T) {
	c := load(t)
	tests := []struct {
		name string
		ch   i18n.Choice
		want string
	}{
		{"nothing said is English", i18n.Choice{}, "en"},
		{"ui_locales comes first", i18n.Choice{UILocales: "fr", UserLocale: "de", AcceptLanguage: "es", Default: "ru"}, "fr"},
		{"the first supported ui_locales tag wins", i18n.Choice{UILocales: "fi ru-RU de"}, "ru"},
		{"an unusable ui_locales falls to the user's locale", i18n.Choice{UILocales: "fi !!", UserLocale: "de"}, "de"},
		{"the user's locale comes before Accept-Language", i18n.Choice{UserLocale: "es-MX", AcceptLanguage: "de"}, "es"},
		{"Accept-Language weights count", i18n.Choice{AcceptLanguage: "fr;q=0.5, zh-CN;q=0.9"}, "zh-Hans"},
		{"Portuguese means Brazilian Portuguese", i18n.Choice{AcceptLanguage: "pt-PT"}, "pt-BR"},
		{"the AuthConfig default comes last", i18n.Choice{AcceptLanguage: "fi", Default: "ru"}, "ru"},
		{"a garbled header falls to the default", i18n.Choice{AcceptLanguage: ";;q=,,", Default: "de"}, "de"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.Choose(tt.ch); got != tt.want {
				t.Errorf("Choose(%+v) = %s, want %s", tt.ch, got, tt.want)
			}
		})
	}
}

func TestLocalizer(t *testing.T) {
	c := load(t)
	t.Run("a message's placeholders are filled", func(t *testing.T) {
		got := c.Localizer("en", nil).T("Code sent to {{.To}}", map[string]any{"To": "a•••@example.com"})
		if got != "Code sent to a•••@example.com" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("an override wins and fills only plain placeholders", func(t *testing.T) {
		l := c.Localizer("de", map[string]string{"Code sent to {{.To}}": `Code an {{.To}} {{printf "%0999999d" 1}}`})
		got := l.T("Code sent to {{.To}}", map[string]any{"To": "x"})
		if got != `Code an x {{printf "%0999999d" 1}}` {
			t.Errorf("an override ran as a template: %.80q", got)
		}
	})
	t.Run("an unknown id is shown as it is and reported", func(t *testing.T) {
		l := c.Localizer("fr", nil)
		var missing []string
		l.Missing = func(id string) { missing = append(missing, id) }
		if got := l.T("No such message", nil); got != "No such message" || len(missing) != 1 {
			t.Errorf("got %q, missing %v", got, missing)
		}
	})
	t.Run("overrides may name only messages and plain placeholders", func(t *testing.T) {
		if err := c.CheckOverride("Sign in", "Anmelden"); err != nil {
			t.Error(err)
		}
		if err := c.CheckOverride("Sing in", "x"); err == nil {
			t.Error("an unknown id was accepted")
		}
		if err := c.CheckOverride("Code sent to {{.To}}", "{{range .}}x{{end}}"); err == nil {
			t.Error("template code was accepted")
		}
	})
	t.Run("the writing direction follows the language", func(t *testing.T) {
		if i18n.Dir("de") != "ltr" || i18n.Dir("ar") != "rtl" || i18n.Dir("he-IL") != "rtl" {
			t.Error("wrong direction")
		}
	})
	t.Run("the languages agree with the resource validation", func(t *testing.T) {
		if !slices.Equal(i18n.Languages, resource.PageLanguages) {
			t.Errorf("i18n %v, resource %v", i18n.Languages, resource.PageLanguages)
		}
	})
}
