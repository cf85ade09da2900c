package oauth

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/ory/fosite"
)

// issResponseModes makes every authorization response carry `iss`
// (RFC 9207), so a client talking to several servers can tell which one
// answered (the mix-up attack). fosite has no option for it: successes get
// the parameter in CompleteAuthorize, and errors come through this
// response-mode extension, which fosite consults before its own writer for
// the modes it claims. The writing itself is fosite's: the same redirect
// and the same form_post page, with iss added.
type issResponseModes struct {
	issuer string
}

var _ fosite.ResponseModeHandler = (*issResponseModes)(nil)

func (h *issResponseModes) ResponseModes() fosite.ResponseModeTypes {
	return fosite.ResponseModeTypes{fosite.ResponseModeDefault, fosite.ResponseModeQuery, fosite.ResponseModeFormPost}
}

// WriteAuthorizeResponse is reached only for modes fosite does not write
// itself; Gatehouse serves none, so it answers like the query mode.
func (h *issResponseModes) WriteAuthorizeResponse(ctx context.Context, rw http.ResponseWriter, ar fosite.AuthorizeRequester, resp fosite.AuthorizeResponder) {
	resp.AddParameter("iss", h.issuer)
	params := resp.GetParameters()
	redir := ar.GetRedirectURI()
	q := redir.Query()
	for k := range params {
		q.Set(k, params.Get(k))
	}
	redir.RawQuery = q.Encode()
	rw.Header().Set("Location", redir.String())
	rw.WriteHeader(http.StatusSeeOther)
}

func (h *issResponseModes) WriteAuthorizeError(ctx context.Context, rw http.ResponseWriter, ar fosite.AuthorizeRequester, err error) {
	rfcerr := fosite.ErrorToRFC6749Error(err).WithExposeDebug(false)
	rw.Header().Set("Cache-Control", "no-store")
	rw.Header().Set("Pragma", "no-cache")
	if !ar.IsRedirectURIValid() {
		// Gatehouse's own WriteAuthorizeError never gets here; fosite's
		// answer for an unverified redirect URI is a JSON error.
		rw.Header().Set("Content-Type", "application/json;charset=UTF-8")
		rw.WriteHeader(rfcerr.CodeField)
		_ = json.NewEncoder(rw).Encode(rfcerr)
		return
	}
	params := rfcerr.ToValues()
	params.Set("state", ar.GetState())
	params.Set("iss", h.issuer)
	redir := *ar.GetRedirectURI()
	redir.Fragment = ""
	if ar.GetResponseMode() == fosite.ResponseModeFormPost {
		rw.Header().Set("Content-Type", "text/html;charset=UTF-8")
		fosite.WriteAuthorizeFormPostResponse(redir.String(), params, formPostTemplate, rw)
		return
	}
	for k, vs := range redir.Query() {
		for _, v := range vs {
			params.Add(k, v)
		}
	}
	redir.RawQuery = params.Encode()
	rw.Header().Set("Location", redir.String())
	rw.WriteHeader(http.StatusSeeOther)
}
