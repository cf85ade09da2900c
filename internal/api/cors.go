package api

import (
	"net/http"

	"github.com/gatehouse/gatehouse/internal/cors"
)

// preflight answers a CORS preflight for the client named by ?client_id=,
// or else any client listing the origin; the real request is then checked
// against its own client, and its answer carries Access-Control-Allow-Origin
// only when that client lists the origin.
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	allowed := false
	if origin != "" {
		var err error
		allowed, err = cors.Known(r.Context(), h.Store, origin, r.URL.Query().Get("client_id"))
		if err != nil {
			h.logger().WarnContext(r.Context(), "look up the origin of a preflight", "err", err)
		}
	}
	cors.WritePreflight(w, r, allowed, "GET, POST, PATCH, DELETE, OPTIONS")
}
