package notify

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"strings"
	texttemplate "text/template"
)

// mailMessages is the English catalog of the e-mail texts, by message id.
// The templates only ever name ids (through `t`), so the catalog can be
// replaced by the i18n bundle's lookup without touching them.
var mailMessages = map[string]string{
	"mail.code.subject":  "Your verification code",
	"mail.code.greeting": "Hello,",
	"mail.code.intro":    "Here is the code you asked for:",
	"mail.code.expiry":   "It expires in %d minutes and works once.",
	"mail.code.ignore":   "If you did not ask for it, you can ignore this e-mail: nobody can sign in with the code alone.",
}

// Translate looks up a message for a language. The built-in one knows
// English only (lang is ignored).
type Translate func(lang, id string, args ...any) string

// EnglishMail is the built-in Translate.
func EnglishMail(_ string, id string, args ...any) string {
	msg, ok := mailMessages[id]
	if !ok {
		return id
	}
	if len(args) > 0 {
		return fmt.Sprintf(msg, args...)
	}
	return msg
}

// MailTemplates renders e-mails from mail/<name>.txt and mail/<name>.html
// in FS; the subject is the message "mail.<name>.subject".
type MailTemplates struct {
	FS fs.FS
	T  Translate // nil: EnglishMail
}

// Rendered is a message's subject and its two bodies.
type Rendered struct {
	Subject, Text, HTML string
}

// Render renders the message name in lang with data (a struct or map the
// templates read; Lang is added by the templates' caller).
func (mt MailTemplates) Render(name, lang string, data any) (Rendered, error) {
	tr := mt.T
	if tr == nil {
		tr = EnglishMail
	}
	t := func(id string, args ...any) string { return tr(lang, id, args...) }
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
	if err := txt.Execute(&b, data); err != nil {
		return Rendered{}, fmt.Errorf("render mail %s.txt: %w", name, err)
	}
	out.Text = b.String()
	h, err := htmltemplate.New(name+".html").Funcs(htmltemplate.FuncMap{"t": t}).ParseFS(mt.FS, "mail/"+name+".html")
	if err != nil {
		return Rendered{}, fmt.Errorf("parse mail template %s.html: %w", name, err)
	}
	b.Reset()
	if err := h.Execute(&b, data); err != nil {
		return Rendered{}, fmt.Errorf("render mail %s.html: %w", name, err)
	}
	out.HTML = b.String()
	return out, nil
}
