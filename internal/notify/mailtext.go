package notify

import (
	"bytes"
	"context"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"path"
	"strings"
	"sync"
	texttemplate "text/template"

	"github.com/BurntSushi/toml"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"

	pagei18n "github.com/gatehouse/gatehouse/internal/i18n"
)

// MailLanguages are the languages of the e-mail catalogs
// (locales/mail.<lang>.toml); the first is the fallback.
var MailLanguages = []string{"en", "de", "fr", "es", "pt-BR", "ru", "zh-Hans"}

// MailTemplates renders e-mails from mail/<name>.txt and mail/<name>.html
// in FS, whose `t "id" data` looks the message up in the catalog of the
// language (locales/mail.<lang>.toml in FS, go-i18n TOML). The subject is
// the message "mail.<name>.subject".
type MailTemplates struct {
	FS fs.FS

	once   sync.Once
	bundle *i18n.Bundle
	err    error
}

// Rendered is a message's subject and its two bodies.
type Rendered struct {
	Subject, Text, HTML string
}

func (mt *MailTemplates) load() error {
	mt.once.Do(func() {
		b := i18n.NewBundle(language.English)
		b.RegisterUnmarshalFunc("toml", toml.Unmarshal)
		for _, lang := range MailLanguages {
			if _, err := b.LoadMessageFileFS(mt.FS, path.Join("locales", "mail."+lang+".toml")); err != nil {
				mt.err = fmt.Errorf("load mail catalog %s: %w", lang, err)
				return
			}
		}
		mt.bundle = b
	})
	return mt.err
}

// Render renders the message name in lang (a BCP 47 tag or an
// Accept-Language value; unknown ones fall back to English) with data,
// to which it adds "Lang", the language used.
func (mt *MailTemplates) Render(name, lang string, data map[string]any) (Rendered, error) {
	return mt.RenderWith(name, lang, nil, data)
}

// RenderWith is Render with an AuthConfig's rewording of messages:
// language → message id → text with {{.Name}} placeholders.
func (mt *MailTemplates) RenderWith(name, lang string, overrides map[string]map[string]string, data map[string]any) (Rendered, error) {
	if err := mt.load(); err != nil {
		return Rendered{}, err
	}
	loc := i18n.NewLocalizer(mt.bundle, lang, "en")
	_, tag, err := loc.LocalizeWithTag(&i18n.LocalizeConfig{MessageID: "mail." + name + ".subject"})
	if err != nil {
		return Rendered{}, fmt.Errorf("mail %s: %w", name, err)
	}
	vars := map[string]any{"Lang": tag.String()}
	for k, v := range data {
		vars[k] = v
	}
	var terr error
	reworded := overrides[tag.String()]
	t := func(id string, args ...any) string {
		if text, ok := reworded[id]; ok {
			fill := vars
			if len(args) > 0 {
				if m, ok := args[0].(map[string]any); ok {
					fill = m
				}
			}
			return pagei18n.Fill(text, fill)
		}
		cfg := &i18n.LocalizeConfig{MessageID: id}
		if len(args) > 0 {
			cfg.TemplateData = args[0]
		}
		s, err := loc.Localize(cfg)
		if err != nil && terr == nil {
			terr = fmt.Errorf("message %s: %w", id, err)
		}
		return s
	}
	var out Rendered
	out.Subject = strings.TrimSpace(t("mail." + name + ".subject"))
	if err := CheckHeader(out.Subject); err != nil {
		return Rendered{}, fmt.Errorf("subject of %s: %w", name, err)
	}
	txt, err := texttemplate.New(name+".txt").Funcs(texttemplate.FuncMap{"t": t}).ParseFS(mt.FS, "mail/"+name+".txt")
	if err != nil {
		return Rendered{}, fmt.Errorf("parse mail template %s.txt: %w", name, err)
	}
	var b bytes.Buffer
	if err := txt.Execute(&b, vars); err != nil {
		return Rendered{}, fmt.Errorf("render mail %s.txt: %w", name, err)
	}
	out.Text = b.String()
	h, err := htmltemplate.New(name+".html").Funcs(htmltemplate.FuncMap{"t": t}).ParseFS(mt.FS, "mail/"+name+".html")
	if err != nil {
		return Rendered{}, fmt.Errorf("parse mail template %s.html: %w", name, err)
	}
	b.Reset()
	if err := h.Execute(&b, vars); err != nil {
		return Rendered{}, fmt.Errorf("render mail %s.html: %w", name, err)
	}
	out.HTML = b.String()
	if terr != nil {
		return Rendered{}, terr
	}
	return out, nil
}

type languageKey struct{}

// WithLanguage returns ctx carrying the language e-mails sent on its
// behalf are written in (a BCP 47 tag or an Accept-Language value).
func WithLanguage(ctx context.Context, lang string) context.Context {
	return context.WithValue(ctx, languageKey{}, lang)
}

// LanguageFrom is the language of WithLanguage, "" when none.
func LanguageFrom(ctx context.Context) string {
	s, _ := ctx.Value(languageKey{}).(string)
	return s
}

type uiLocalesKey struct{}

// WithUILocales returns ctx carrying the OIDC ui_locales (space-separated
// BCP 47 tags) of the sign-in that sends e-mails.
func WithUILocales(ctx context.Context, uiLocales string) context.Context {
	return context.WithValue(ctx, uiLocalesKey{}, uiLocales)
}

// MailLanguage is the language to write an e-mail in, for Render: the
// sign-in's ui_locales, else the recipient's stored locale, else the
// request's Accept-Language ("" when none: English).
func MailLanguage(ctx context.Context, recipientLocale string) string {
	if ui, _ := ctx.Value(uiLocalesKey{}).(string); strings.TrimSpace(ui) != "" && len(ui) <= 256 {
		return strings.Join(strings.Fields(ui), ",")
	}
	if recipientLocale != "" && len(recipientLocale) <= 64 {
		return recipientLocale
	}
	return LanguageFrom(ctx)
}
