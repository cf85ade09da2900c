package web_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
	"github.com/gatehouse/gatehouse/templates"
)

// signInWord is the login page's heading in each language.
func signInWord(t *testing.T, lang string) string {
	t.Helper()
	cat, err := i18n.Load(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	w := cat.Messages(lang)["Sign in"]
	if w == "" {
		t.Fatalf("no %s text for Sign in", lang)
	}
	return w
}

func (b *browser) getLang(path, acceptLanguage string) page {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.abs(path), nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if acceptLanguage != "" {
		req.Header.Set("Accept-Language", acceptLanguage)
	}
	return b.do(req)
}

func TestPageLanguages(t *testing.T) {
	e := newEnv(t, gormstoretest.Open(t))

	for _, lang := range i18n.Languages {
		t.Run("the login page is written in "+lang+" when the browser asks for it", func(t *testing.T) {
			p := e.browser().getLang("/auth/login", lang+",en;q=0.5")
			if !strings.Contains(p.body, `<html lang="`+lang+`" dir="ltr">`) {
				t.Fatalf("no <html lang=%q dir=ltr>:\n%.300s", lang, p.body)
			}
			if !strings.Contains(p.body, `<h1 id="heading">`+signInWord(t, lang)+`</h1>`) {
				t.Errorf("heading not in %s:\n%s", lang, p.body)
			}
		})
	}

	t.Run("a regional variant gets its language (de-AT is German, pt is Brazilian Portuguese)", func(t *testing.T) {
		for asked, want := range map[string]string{"de-AT": "de", "pt": "pt-BR", "zh-CN": "zh-Hans", "fr-CA;q=0.9": "fr"} {
			if p := e.browser().getLang("/auth/login", asked); !strings.Contains(p.body, `lang="`+want+`"`) {
				t.Errorf("Accept-Language %s: want lang %s", asked, want)
			}
		}
	})

	t.Run("an unsupported or garbled Accept-Language falls back to English", func(t *testing.T) {
		for _, asked := range []string{"fi", "*", ";;;q=x", strings.Repeat("a-", 600)} {
			p := e.browser().getLang("/auth/login", asked)
			if p.status != http.StatusOK || !strings.Contains(p.body, `lang="en"`) {
				t.Errorf("Accept-Language %.20q: status %d, want English", asked, p.status)
			}
		}
	})

	t.Run("ui_locales wins over Accept-Language and is kept for the rest of the sign-in", func(t *testing.T) {
		b := e.browser()
		p := b.getLang("/auth/authorize?"+authorizeQuery(firstParty, "ui_locales", "ru en").Encode(), "de")
		p = b.follow(p)
		if !strings.Contains(p.body, `lang="ru"`) {
			t.Fatalf("login page after ui_locales=ru: not Russian:\n%.300s", p.body)
		}
		if p := b.getLang("/auth/login", "de"); !strings.Contains(p.body, `lang="ru"`) {
			t.Error("the next page forgot ui_locales")
		}
	})

	t.Run("the signed-in user's locale wins over Accept-Language", func(t *testing.T) {
		rec, err := e.st.GetUser(context.Background(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		u, err := resource.UserFromStore(rec)
		if err != nil {
			t.Fatal(err)
		}
		u.Locale = "es"
		next, err := resource.ToStoreUser(u, rec.PasswordHash, &rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.st.PutUser(context.Background(), next, rec.Version); err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		b.signIn()
		if p := b.getLang("/auth/two-factor", "de"); !strings.Contains(p.body, `lang="es"`) {
			t.Errorf("settings page of a user with locale es:\n%.300s", p.body)
		}
	})

	t.Run("the AuthConfig's defaultLocale applies when nothing else names a language, and its messages reword the page", func(t *testing.T) {
		e := newEnv(t, gormstoretest.Open(t))
		e.putAuthConfig(resource.AuthConfig{ID: "default", DefaultLocale: "fr", Messages: map[string]map[string]string{
			"fr": {"Sign in": "Entrer chez nous"},
			"de": {"Sign in": "Hereinspaziert"},
		}})
		if p := e.browser().getLang("/auth/login", ""); !strings.Contains(p.body, `lang="fr"`) || !strings.Contains(p.body, "Entrer chez nous") {
			t.Errorf("defaultLocale fr with an override:\n%.600s", p.body)
		}
		if p := e.browser().getLang("/auth/login", "de"); !strings.Contains(p.body, "Hereinspaziert") {
			t.Errorf("German override not shown:\n%.600s", p.body)
		}
	})
}
