package web

import (
	"context"
	"maps"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/i18n"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/templates"
)

// dateLayout writes every date on the pages: numeric, so it reads the
// same in every language.
const dateLayout = "2006-01-02 15:04 UTC"

// tr marks a Go string as a page message: its value is the message id (the
// English text), looked up in the request's language when a template
// prints it with T. TestCatalogs collects the ids from these calls.
func tr(id string) string { return id }

func mustLoadCatalog() *i18n.Catalog {
	c, err := i18n.Load(templates.FS)
	if err != nil {
		// Embedded at build time: a broken catalog fails every test run.
		panic(err)
	}
	return c
}

// languageOf chooses the page language from what the request has shown
// so far (see sessionSlot): ui_locales, the signed-in user's locale,
// Accept-Language, the AuthConfig's defaultLocale.
func (h *Handler) languageOf(r *http.Request) (string, map[string]string) {
	ch := i18n.Choice{AcceptLanguage: r.Header.Get("Accept-Language"), UILocales: r.URL.Query().Get("ui_locales")}
	var ac *resource.AuthConfig
	if slot, ok := r.Context().Value(sessionSlotKey{}).(*sessionSlot); ok {
		if ch.UILocales == "" && slot.sess != nil {
			ch.UILocales = slot.sess.UILocales()
		}
		if slot.user != nil {
			ch.UserLocale = resource.UserLocale(*slot.user)
		}
		ac = slot.authConfig
	}
	if ac != nil {
		ch.Default = ac.DefaultLocale
	}
	lang := h.catalog.Choose(ch)
	var overrides map[string]string
	if ac != nil {
		overrides = ac.Messages[lang]
	}
	return lang, overrides
}

// mailContext is the request's context for sending e-mails: they follow
// the ui_locales the sign-in asked for, as the page does (then the
// recipient's locale, then Accept-Language; see notify.MailLanguage).
func (h *Handler) mailContext(r *http.Request) context.Context {
	ui := r.URL.Query().Get("ui_locales")
	if slot, ok := r.Context().Value(sessionSlotKey{}).(*sessionSlot); ok && ui == "" && slot.sess != nil {
		ui = slot.sess.UILocales()
	}
	if ui == "" {
		return r.Context()
	}
	return notify.WithUILocales(r.Context(), ui)
}

// addMessageArgs adds placeholders for the page's messages to the request.
func addMessageArgs(r *http.Request, args map[string]any) {
	if slot, ok := r.Context().Value(sessionSlotKey{}).(*sessionSlot); ok {
		if slot.args == nil {
			slot.args = map[string]any{}
		}
		maps.Copy(slot.args, args)
	}
}

// localize gives data the request's language and the request's message
// placeholders.
func (h *Handler) localize(r *http.Request, data *pageData) {
	if slot, ok := r.Context().Value(sessionSlotKey{}).(*sessionSlot); ok && len(slot.args) > 0 {
		args := maps.Clone(slot.args)
		maps.Copy(args, data.Args)
		data.Args = args
	}
	lang, overrides := h.languageOf(r)
	data.Lang, data.Dir = lang, i18n.Dir(lang)
	data.loc = h.catalog.Localizer(lang, overrides)
	data.loc.Missing = h.OnMissingMessage
}

// T is a template's translation of message id in the page's language;
// kv are placeholder names and values, added to the page's Args.
func (d *pageData) T(id string, kv ...any) string {
	var args map[string]any
	if len(d.Args) > 0 || len(kv) > 0 {
		args = make(map[string]any, len(d.Args)+len(kv)/2)
		maps.Copy(args, d.Args)
		if len(kv) == 1 {
			m, _ := kv[0].(map[string]any)
			maps.Copy(args, m)
			kv = nil
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok {
				args[k] = kv[i+1]
			}
		}
	}
	return d.loc.T(id, args)
}
