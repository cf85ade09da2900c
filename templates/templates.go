package templates

import "embed"

// FS holds every *.html template and the pages' message catalogs
// (locales/pages.<lang>.toml, read by internal/i18n), and the English
// mail catalog, whose ids an AuthConfig may reword too.
//
//go:embed *.html locales/pages.*.toml locales/mail.en.toml
var FS embed.FS
