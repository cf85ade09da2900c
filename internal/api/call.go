package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/account"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/cors"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// apiError is a refusal the caller sees: an OAuth-style error code, a plain
// description and the status. Extra fields join the body (e.g. the
// recovery codes of a sign-in that lost its race after they were issued).
type apiError struct {
	Status     int
	Code       string
	Desc       string
	RetryAfter time.Duration
	Extra      map[string]any
}

func (e *apiError) Error() string { return e.Code + ": " + e.Desc }

func fail(status int, code, desc string) *apiError {
	return &apiError{Status: status, Code: code, Desc: desc}
}

// throttled is the 429 for an account.ThrottledError: too many failures
// for this account from this address, or from this address.
func throttled(err error) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Code: "too_many_attempts",
		Desc:       "Too many failed sign-ins for this account from this address. Sign-in is paused here; try again after Retry-After seconds.",
		RetryAfter: time.Duration(account.RetryAfterOf(err)) * time.Second}
}

func badRequest(desc string) *apiError { return fail(http.StatusBadRequest, "invalid_request", desc) }

func missing(field string) *apiError { return badRequest(field + " is required") }

// The refusals shared by several endpoints.
var (
	errInvalidCode = &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_code",
		Desc: "The code is not valid. Check it and try again, or ask for a new one."}
	errInvalidMFAToken = &apiError{Status: http.StatusUnauthorized, Code: "invalid_mfa_token",
		Desc: "The mfa_token is invalid, expired, already used or for another client. Sign in again."}
	errTooManySends = &apiError{Status: http.StatusTooManyRequests, Code: "too_many_requests",
		Desc: "Too many codes were sent to this destination. Try again later.", RetryAfter: time.Hour}
	errNoWebhook = &apiError{Status: http.StatusConflict, Code: "delivery_not_configured",
		Desc: "No webhook is configured on the AuthConfig to deliver codes by SMS or e-mail."}
	errUnverified = &apiError{Status: http.StatusUnprocessableEntity, Code: "destination_not_verified",
		Desc: "Verify the phone number or e-mail address first (POST /auth/verification-codes, then /auth/verify-destination)."}
	errAlreadyEnabled = &apiError{Status: http.StatusConflict, Code: "already_enabled",
		Desc: "A second factor is already enabled; delete it first (DELETE /auth/mfa/{id})."}
	errNotEnabled = &apiError{Status: http.StatusConflict, Code: "not_enabled",
		Desc: "Two-factor authentication is not enabled for this account."}
	errOriginNotAllowed = &apiError{Status: http.StatusForbidden, Code: "origin_not_allowed",
		Desc: "This origin is not listed in the client's allowed_origins."}
	errUnmetLevel = &apiError{Status: http.StatusForbidden, Code: "unmet_authentication_requirements",
		Desc: "This client accepts second factors this account does not have, and none can be set up here."}
	errUnavailable = &apiError{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
		Desc: "The service is temporarily unavailable. Try again after Retry-After seconds.", RetryAfter: store.RetryAfter}
	errInternal = &apiError{Status: http.StatusInternalServerError, Code: "server_error",
		Desc: "The request failed on the server. The request id names it in the server's log."}
)

// asAPIError is the one mapping of this surface's failures: a refusal as
// it was made; storage that cannot serve now (or a deadline that passed)
// as 503 with Retry-After; anything else as 500. The cause goes to the
// log, never to the client.
func (c *call) asAPIError(err error, what string) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if store.Unavailable(err) {
		c.h.logger().WarnContext(c.r.Context(), what+": storage unavailable",
			"path", c.r.URL.Path, "request_id", audit.RequestID(c.r.Context()), "err", err)
		return errUnavailable
	}
	c.h.logger().ErrorContext(c.r.Context(), what,
		"path", c.r.URL.Path, "request_id", audit.RequestID(c.r.Context()), "err", err)
	return errInternal
}

// call is one API request on its way through a handler.
type call struct {
	h      *Handler
	w      http.ResponseWriter
	r      *http.Request
	p      params
	origin string
	// client is the Client the request is for, once known: its
	// allowed_origins decide the CORS headers of the answer.
	client *resource.Client
}

// endpoint runs fn with the request's parameters parsed and turns its
// result into the response. fn writes its success itself (c.json); an error
// becomes the error body, with the CORS headers of the client if known.
func (h *Handler) endpoint(fn func(*call) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A request memo: the call and the OAuth provider it hands the
		// sign-in to read its client and AuthConfig once. These endpoints
		// never write either.
		r = r.WithContext(resource.WithRequestMemo(r.Context()))
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("Pragma", "no-cache")
		hd.Add("Vary", "Origin")
		c := &call{h: h, w: w, r: r, origin: r.Header.Get("Origin")}
		p, perr := parseParams(w, r)
		if perr != nil {
			c.fallbackClient(nil)
			c.writeError(perr)
			return
		}
		c.p = p
		if err := fn(c); err != nil {
			c.fallbackClient(p)
			c.writeError(err)
		}
	})
}

// fallbackClient, for an error answered before the handler knew its
// client, takes the client_id the request names, so an app on a listed
// origin can still read why it was refused.
func (c *call) fallbackClient(p params) {
	if c.client != nil || c.origin == "" {
		return
	}
	id := c.r.URL.Query().Get("client_id")
	if p != nil && p.get("client_id") != "" {
		id = p.get("client_id")
	}
	if id == "" {
		return
	}
	if cl, err := c.h.loadClient(c.r.Context(), id); err == nil {
		c.client = &cl
	}
}

// useClient names the client the request is for. A browser request from an
// origin the client does not list is refused: the answer would be unreadable
// anyway, and the action behind it must not run on a foreign page's behalf.
func (c *call) useClient(cl resource.Client) error {
	c.client = &cl
	if c.origin != "" && !cors.Allowed(cl.AllowedOrigins, c.origin) {
		return errOriginNotAllowed
	}
	return nil
}

func (c *call) cors() {
	if c.client == nil || c.origin == "" || !cors.Allowed(c.client.AllowedOrigins, c.origin) {
		return
	}
	cors.Allow(c.w.Header(), c.origin)
}

// json writes a success.
func (c *call) json(status int, v any) error {
	c.cors()
	writeJSON(c.w, status, v)
	return nil
}

func (c *call) writeError(err error) {
	ae := c.asAPIError(err, "api request failed")
	c.cors()
	if ae.RetryAfter > 0 {
		c.w.Header().Set("Retry-After", strconv.Itoa(int(ae.RetryAfter.Seconds())))
	}
	if ae.Status == http.StatusUnauthorized && ae.Code == "invalid_token" {
		c.w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	body := map[string]any{"error": ae.Code, "error_description": ae.Desc}
	for k, v := range ae.Extra {
		body[k] = v
	}
	writeJSON(c.w, ae.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":"server_error"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// params are the request's parameters: the query string of a GET or
// DELETE, then the body (JSON object or form-encoded), the body winning. Values are strings;
// JSON booleans read as "true"/"false".
type params map[string]string

func (p params) get(name string) string { return p[name] }

// flag reads a boolean parameter ("true"/"1" are true).
func (p params) flag(name string) bool {
	v := strings.ToLower(p[name])
	return v == "true" || v == "1"
}

// maxValue bounds a single parameter; real ones are far shorter.
const maxValue = 8 << 10

func parseParams(w http.ResponseWriter, r *http.Request) (params, *apiError) {
	p := params{}
	// POST parameters come from the body only: passwords and codes do not
	// belong in URLs, which proxies log. GET and DELETE (DELETE
	// /auth/mfa/{id}?code=…) read the query too.
	if r.Method == http.MethodGet || r.Method == http.MethodDelete {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, badRequest("The query string is malformed.")
		}
		if err := p.addForm(q); err != nil {
			return nil, err
		}
	}
	body, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if rerr != nil {
		var mbe *http.MaxBytesError
		if errors.As(rerr, &mbe) {
			return nil, fail(http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("The body exceeds %d KiB.", MaxBody>>10))
		}
		return nil, badRequest("The body could not be read.")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return p, nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" {
		mt, err = "application/json", nil // curl -d without -H: JSON is what this API speaks
	}
	switch {
	case err != nil:
		return nil, fail(http.StatusUnsupportedMediaType, "invalid_request", "Send application/json or application/x-www-form-urlencoded.")
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		if err := p.addJSON(body); err != nil {
			return nil, err
		}
	case mt == "application/x-www-form-urlencoded":
		f, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, badRequest("The form body is malformed.")
		}
		if err := p.addForm(f); err != nil {
			return nil, err
		}
	default:
		return nil, fail(http.StatusUnsupportedMediaType, "invalid_request", "Send application/json or application/x-www-form-urlencoded.")
	}
	return p, nil
}

func (p params) set(k, v string) *apiError {
	if len(v) > maxValue || !utf8.ValidString(v) {
		return badRequest(fmt.Sprintf("%s is too long or not UTF-8.", safeName(k)))
	}
	p[k] = v
	return nil
}

func (p params) addForm(f url.Values) *apiError {
	for k, vs := range f {
		if len(vs) > 1 {
			return badRequest(fmt.Sprintf("%s is given more than once.", safeName(k)))
		}
		if err := p.set(k, vs[0]); err != nil {
			return err
		}
	}
	return nil
}

func (p params) addJSON(body []byte) *apiError {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return badRequest("The body is not a JSON object.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("The body has data after the JSON object.")
	}
	for k, v := range obj {
		switch v := v.(type) {
		case nil:
			delete(p, k)
		case string:
			if err := p.set(k, v); err != nil {
				return err
			}
		case bool:
			p[k] = strconv.FormatBool(v)
		case map[string]any:
			// A passkey's answer (the browser's PublicKeyCredential as
			// JSON) may come as the object itself; it is kept as its JSON.
			b, err := json.Marshal(v)
			if err != nil {
				return badRequest(fmt.Sprintf("%s is not valid JSON.", safeName(k)))
			}
			if err := p.set(k, string(b)); err != nil {
				return err
			}
		default:
			return badRequest(fmt.Sprintf("%s must be a string.", safeName(k)))
		}
	}
	return nil
}

// safeName quotes a caller-chosen field name for a message, cut short.
func safeName(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	return strconv.Quote(k)
}

// need returns the named parameters, refusing the first missing one.
func (c *call) need(names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		v := strings.TrimSpace(c.p.get(n))
		if v == "" {
			return nil, missing(n)
		}
		out[i] = v
	}
	return out, nil
}
