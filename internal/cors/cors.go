package cors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Allowed reports whether origins lists origin. Origins compare without a
// trailing slash and with scheme and host case-insensitive, the way
// browsers serialise them; the opaque origin "null" is never allowed.
func Allowed(origins []string, origin string) bool {
	o := strings.TrimSuffix(origin, "/")
	if o == "" || o == "null" {
		return false
	}
	for _, a := range origins {
		if strings.EqualFold(strings.TrimSuffix(a, "/"), o) {
			return true
		}
	}
	return false
}

// maxClientScan bounds the clients a preflight looks through.
const maxClientScan = 10000

// Known reports whether origin is allowed by the client named clientID or,
// when clientID is empty, by any client. A preflight carries no body and
// no Authorization header, so it rarely names its client; the real request
// is then checked against its own client (Allow).
func Known(ctx context.Context, st store.Store, origin, clientID string) (bool, error) {
	if clientID != "" {
		sc, err := resource.FetchClient(ctx, st, clientID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return false, nil
			}
			return false, fmt.Errorf("get client %q: %w", clientID, err)
		}
		return Allowed(sc.Client.AllowedOrigins, origin), nil
	}
	const page = 200
	for n := 1; n*page <= maxClientScan+page; n++ {
		recs, total, err := st.ListClients(ctx, store.Page{Count: page, Page: n})
		if err != nil {
			return false, fmt.Errorf("list clients: %w", err)
		}
		for _, rec := range recs {
			c, err := resource.ClientFromStore(rec)
			if err == nil && Allowed(c.AllowedOrigins, origin) {
				return true, nil
			}
		}
		if len(recs) == 0 || n*page >= total {
			return false, nil
		}
	}
	return false, nil
}

// preflightMaxAge lets a browser reuse a preflight for ten minutes.
const preflightMaxAge = "600"

// WritePreflight answers a preflight (204). When allowed, the answer lets
// origin send methods with the Authorization, Content-Type and DPoP
// headers; otherwise it carries no CORS headers and the browser refuses.
func WritePreflight(w http.ResponseWriter, r *http.Request, allowed bool, methods string) {
	hd := w.Header()
	hd.Add("Vary", "Origin")
	hd.Add("Vary", "Access-Control-Request-Method")
	hd.Add("Vary", "Access-Control-Request-Headers")
	hd.Set("Cache-Control", "no-store")
	if origin := r.Header.Get("Origin"); allowed && origin != "" {
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Set("Access-Control-Allow-Methods", methods)
		hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP")
		hd.Set("Access-Control-Max-Age", preflightMaxAge)
	}
	w.WriteHeader(http.StatusNoContent)
}

// Allow lets origin read the answer, and the headers clients act on.
func Allow(hd http.Header, origin string) {
	hd.Set("Access-Control-Allow-Origin", origin)
	hd.Set("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate, DPoP-Nonce")
}
