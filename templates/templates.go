package templates

import "embed"

// FS holds every *.html template.
//
//go:embed *.html
var FS embed.FS
