package templates

import "embed"

// FS holds every *.html template and the pages' message catalogs
// (locales/pages.<lang>.toml, read by internal/i18n).
//
//go:embed *.html locales/pages.*.toml
var FS embed.FS
