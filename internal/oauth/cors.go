package oauth

import (
	"net/http"

	"github.com/gatehouse/gatehouse/internal/cors"
)

// The protocol endpoints a single-page app calls from the browser, and
// the methods its preflight may ask for.
var corsEndpoints = map[string]string{
	PathToken:      "POST, OPTIONS",
	PathPAR:        "POST, OPTIONS",
	PathRevoke:     "POST, OPTIONS",
	PathIntrospect: "POST, OPTIONS",
	PathUserinfo:   "GET, POST, OPTIONS",
}

// preflight answers a CORS preflight for one of corsEndpoints. It rarely
// names its client (a token request's client_id is in the body), so any
// client listing the origin lets the browser send the request; the answer
// to the request itself is readable only when its own client lists the
// origin (allowOrigin).
func (p *Provider) preflight(methods string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := false
		if origin != "" {
			var err error
			allowed, err = cors.Known(r.Context(), p.cfg.Store, origin, r.URL.Query().Get("client_id"))
			if err != nil {
				p.cfg.Logger.WarnContext(r.Context(), "look up the origin of a preflight", "err", err)
			}
		}
		cors.WritePreflight(w, r, allowed, methods)
	}
}

// requestClientCORS lets the browser read the answer when the client the
// request names (client_id in the form, or the Basic user) lists its
// origin. A request without Origin costs nothing here. Whether the client
// then authenticates does not matter: its origins are no secret, and an
// SPA needs to read its errors too.
func (p *Provider) requestClientCORS(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			w.Header().Add("Vary", "Origin")
			if err := r.ParseForm(); err == nil {
				if id, _, _, err := credentials(r, r.PostForm); err == nil {
					p.allowOrigin(w, r, id)
				}
			}
		}
		h(w, r)
	}
}

// allowOrigin adds the CORS headers when client id lists the request's
// Origin.
func (p *Provider) allowOrigin(w http.ResponseWriter, r *http.Request, id string) {
	origin := r.Header.Get("Origin")
	if origin == "" || id == "" {
		return
	}
	c, err := p.getClient(r.Context(), id, "")
	if err == nil && cors.Allowed(c.res.AllowedOrigins, origin) {
		cors.Allow(w.Header(), origin)
	}
}
