package static

import "embed"

// FS holds the assets at its root: gatehouse.css is /static/gatehouse.css.
//
//go:embed *.css
var FS embed.FS
