package templates

import "embed"

// MailFS holds the e-mail templates: mail/<name>.txt (the plain-text part)
// and mail/<name>.html (the HTML part) of each message, rendered by
// internal/notify with a `t` function that looks message ids up in the
// catalogs locales/mail.<lang>.toml (also embedded here).
//
//go:embed mail/*.txt mail/*.html locales/mail.*.toml
var MailFS embed.FS
