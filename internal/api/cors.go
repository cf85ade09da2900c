package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// originAllowed reports whether the client lists origin. Origins compare
// without a trailing slash and with scheme and host case-insensitive, the
// way browsers serialise them.
func originAllowed(c resource.Client, origin string) bool {
	o := strings.TrimSuffix(origin, "/")
	if o == "" || o == "null" {
		return false
	}
	for _, a := range c.AllowedOrigins {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), o) {
			return true
		}
	}
	return false
}

// preflightMaxAge lets a browser reuse a preflight for ten minutes.
const preflightMaxAge = "600"

// preflight answers a CORS preflight. A preflight carries no body and no
// Authorization header, so the client is the one named by ?client_id=, or
// else any client listing the origin; the real request is then checked
// against its own client, and its answer carries Access-Control-Allow-Origin
// only when that client lists the origin.
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Add("Vary", "Origin")
	hd.Add("Vary", "Access-Control-Request-Method")
	hd.Add("Vary", "Access-Control-Request-Headers")
	hd.Set("Cache-Control", "no-store")
	origin := r.Header.Get("Origin")
	if origin != "" && h.originKnown(r.Context(), origin, r.URL.Query().Get("client_id")) {
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		hd.Set("Access-Control-Max-Age", preflightMaxAge)
	}
	w.WriteHeader(http.StatusNoContent)
}

// maxClientScan bounds the clients a preflight looks through.
const maxClientScan = 10000

func (h *Handler) originKnown(ctx context.Context, origin, clientID string) bool {
	if clientID != "" {
		c, err := h.loadClient(ctx, clientID)
		return err == nil && originAllowed(c, origin)
	}
	const page = 200
	for n := 1; n*page <= maxClientScan+page; n++ {
		recs, total, err := h.Store.ListClients(ctx, store.Page{Count: page, Page: n})
		if err != nil {
			h.logger().WarnContext(ctx, "list clients for a preflight", "err", err)
			return false
		}
		for _, rec := range recs {
			c, err := resource.ClientFromStore(rec)
			if err == nil && originAllowed(c, origin) {
				return true
			}
		}
		if len(recs) == 0 || n*page >= total {
			return false
		}
	}
	return false
}
