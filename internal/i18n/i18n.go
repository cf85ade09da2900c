package i18n

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"
	goi18n "github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// Languages are the languages every page is written in; the first is the
// fallback. Their tags are what discovery lists as ui_locales_supported.
var Languages = []string{"en", "de", "fr", "es", "pt-BR", "ru", "zh-Hans"}

// rtl are the base languages written right to left, for <html dir>.
var rtl = map[string]bool{"ar": true, "he": true, "fa": true, "ur": true, "yi": true}

// Catalog is the page messages of every language.
type Catalog struct {
	bundle  *goi18n.Bundle
	tags    []language.Tag
	matcher language.Matcher
	ids     map[string]bool
	// mailIDs are the e-mails' message ids (locales/mail.en.toml): an
	// AuthConfig may reword those too.
	mailIDs map[string]bool
	byLang  map[string]map[string]string
}

// Load reads locales/pages.<lang>.toml of every language from fsys.
func Load(fsys fs.FS) (*Catalog, error) {
	c := &Catalog{
		bundle: goi18n.NewBundle(language.English),
		ids:    map[string]bool{},
		byLang: map[string]map[string]string{},
	}
	c.bundle.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	for _, lang := range Languages {
		file := path.Join("locales", "pages."+lang+".toml")
		raw, err := fs.ReadFile(fsys, file)
		if err != nil {
			return nil, fmt.Errorf("read page catalog %s: %w", lang, err)
		}
		msgs := map[string]string{}
		if err := toml.Unmarshal(raw, &msgs); err != nil {
			return nil, fmt.Errorf("parse page catalog %s: %w", lang, err)
		}
		if _, err := c.bundle.ParseMessageFileBytes(raw, file); err != nil {
			return nil, fmt.Errorf("load page catalog %s: %w", lang, err)
		}
		tag := language.MustParse(lang)
		c.tags = append(c.tags, tag)
		c.byLang[lang] = msgs
		if lang == Languages[0] {
			for id := range msgs {
				c.ids[id] = true
			}
		}
	}
	c.matcher = language.NewMatcher(c.tags)
	raw, err := fs.ReadFile(fsys, path.Join("locales", "mail."+Languages[0]+".toml"))
	if err != nil {
		return nil, fmt.Errorf("read mail catalog: %w", err)
	}
	mail := map[string]string{}
	if err := toml.Unmarshal(raw, &mail); err != nil {
		return nil, fmt.Errorf("parse mail catalog: %w", err)
	}
	c.mailIDs = map[string]bool{}
	for id := range mail {
		c.mailIDs[id] = true
	}
	return c, nil
}

// Messages is the catalog of lang (one of Languages), id → text; callers
// must not change it. Tests use it to check the catalogs are complete.
func (c *Catalog) Messages(lang string) map[string]string { return c.byLang[lang] }

// Has reports whether id is a message of the catalog.
func (c *Catalog) Has(id string) bool { return c.ids[id] }

// Supported reports whether lang names one of Languages exactly.
func Supported(lang string) bool {
	for _, l := range Languages {
		if l == lang {
			return true
		}
	}
	return false
}

// Choice is what a request says about its language, in the order it counts.
type Choice struct {
	UILocales      string // OIDC ui_locales: space-separated BCP 47 tags
	UserLocale     string // the signed-in user's stored locale
	AcceptLanguage string // the Accept-Language header
	Default        string // the AuthConfig's defaultLocale
}

// Choose returns the language of Languages that the first source with a
// usable answer asks for, else English.
func (c *Catalog) Choose(ch Choice) string {
	if tags := parseList(strings.Fields(ch.UILocales)); len(tags) > 0 {
		if l, ok := c.match(tags); ok {
			return l
		}
	}
	if t, err := language.Parse(ch.UserLocale); err == nil && ch.UserLocale != "" {
		if l, ok := c.match([]language.Tag{t}); ok {
			return l
		}
	}
	if ch.AcceptLanguage != "" && len(ch.AcceptLanguage) <= 1024 {
		if tags, _, err := language.ParseAcceptLanguage(ch.AcceptLanguage); err == nil && len(tags) > 0 {
			if l, ok := c.match(tags); ok {
				return l
			}
		}
	}
	if Supported(ch.Default) {
		return ch.Default
	}
	return Languages[0]
}

// maxTags bounds how many preferences of one source are matched.
const maxTags = 16

func parseList(fields []string) []language.Tag {
	var tags []language.Tag
	for _, f := range fields {
		if len(tags) == maxTags {
			break
		}
		if t, err := language.Parse(f); err == nil {
			tags = append(tags, t)
		}
	}
	return tags
}

func (c *Catalog) match(tags []language.Tag) (string, bool) {
	if len(tags) > maxTags {
		tags = tags[:maxTags]
	}
	_, i, conf := c.matcher.Match(tags...)
	if conf == language.No {
		return "", false
	}
	return Languages[i], true
}

// Dir is the writing direction of lang for <html dir>: "rtl" or "ltr".
func Dir(lang string) string {
	base, _ := language.Make(lang).Base()
	if rtl[base.String()] {
		return "rtl"
	}
	return "ltr"
}

// Localizer writes messages in one language.
type Localizer struct {
	Lang      string
	loc       *goi18n.Localizer
	overrides map[string]string
	// Missing, if set, is told of every id the catalog does not have (the
	// text is then the id itself).
	Missing func(id string)
}

// Localizer returns the Localizer of lang with overrides (an AuthConfig's
// wording for this language, id → text) taking precedence.
func (c *Catalog) Localizer(lang string, overrides map[string]string) *Localizer {
	return &Localizer{Lang: lang, loc: goi18n.NewLocalizer(c.bundle, lang), overrides: overrides}
}

// T returns message id in the Localizer's language, with data filling its
// {{.Name}} placeholders.
func (l *Localizer) T(id string, data map[string]any) string {
	if l == nil {
		return id
	}
	if s, ok := l.overrides[id]; ok {
		return execute(s, data)
	}
	s, err := l.loc.Localize(&goi18n.LocalizeConfig{MessageID: id, TemplateData: data})
	if err == nil {
		return s
	}
	if l.Missing != nil {
		l.Missing(id)
	}
	if s != "" {
		return s
	}
	return execute(id, data)
}

// placeholder is the one form of {{…}} an override may hold: a field of
// the message's data. Operators' texts never run as templates.
var placeholder = regexp.MustCompile(`\{\{\s*\.([A-Za-z][A-Za-z0-9]*)\s*\}\}`)

// execute fills the {{.Name}} placeholders of an override or an unknown id.
// Fill replaces the {{.Name}} placeholders of s with data's values (an
// override's text: no other template syntax is allowed in one).
func Fill(s string, data map[string]any) string { return execute(s, data) }

func execute(s string, data map[string]any) string {
	if !strings.Contains(s, "{{") {
		return s
	}
	return placeholder.ReplaceAllStringFunc(s, func(m string) string {
		v, ok := data[placeholder.FindStringSubmatch(m)[1]]
		if !ok {
			return ""
		}
		return fmt.Sprint(v)
	})
}

// CheckOverride reports why text cannot replace message id: the id is not
// a message, or the text has a {{…}} that is not a {{.Name}} placeholder.
func (c *Catalog) CheckOverride(id, text string) error {
	if !c.ids[id] && !c.mailIDs[id] {
		return fmt.Errorf("%q is not a message of the hosted pages or e-mails", id)
	}
	if strings.Contains(placeholder.ReplaceAllString(text, ""), "{{") {
		return fmt.Errorf("the text of %q may hold only {{.Name}} placeholders", id)
	}
	return nil
}
