package static

import "embed"

// FS holds the assets at its root: gatehouse.css is /static/gatehouse.css,
// passkey.js (the browser side of passkeys) /static/passkey.js.
//
//go:embed *.css *.js
var FS embed.FS
