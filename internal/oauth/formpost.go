package oauth

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"

	"github.com/ory/fosite"
)

// formPostSubmit is the one script of the form_post page. The page's CSP
// allows exactly this text by its hash, so nothing else can run there.
const formPostSubmit = `document.forms[0].submit();`

// formPostTemplate is the response_mode=form_post page (OAuth 2.0 Form
// Post Response Mode). fosite's own page submits from an inline onload
// handler, which a CSP without 'unsafe-inline' blocks; this one submits
// from a hashed script and shows a button for browsers without script.
var formPostTemplate = template.Must(template.New("form_post").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Continue to the application</title></head>
<body>
<form method="post" action="{{ .RedirURL }}">
{{- range $key, $values := .Parameters }}{{ range $values }}
<input type="hidden" name="{{ $key }}" value="{{ . }}">
{{- end }}{{ end }}
<noscript><p>Press the button to continue to the application.</p></noscript>
<button type="submit" id="continue">Continue</button>
</form>
<script>` + formPostSubmit + `</script>
</body>
</html>`))

// formPostCSP is the page's policy: its one script by hash, no other
// sources; form-action is left open because the form's target is the
// client's registered redirect URI, which fosite has already checked.
var formPostCSP = func() string {
	sum := sha256.Sum256([]byte(formPostSubmit))
	return "default-src 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; frame-ancestors 'none'; base-uri 'none'"
}()

// allowFormPost sets the form_post page's CSP when ar answers by form_post.
// Call it before any fosite write to the client (response or error).
func allowFormPost(w http.ResponseWriter, ar fosite.AuthorizeRequester) {
	if ar != nil && ar.GetResponseMode() == fosite.ResponseModeFormPost {
		w.Header().Set("Content-Security-Policy", formPostCSP)
	}
}
