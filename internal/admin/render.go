package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Errors of the service half, mapped to statuses by fail.
var (
	errNotFound     = errors.New("resource not found")
	errPrecondition = errors.New("version does not match If-Match")
)

// conflictError is a write refused because of other data (a duplicate
// e-mail, an AuthConfig still referenced): 409 with the field path.
type conflictError struct {
	path string
	code string
	msg  string
}

func (e *conflictError) Error() string { return e.msg }

// responseFormat picks JSON or YAML for the response: `_format` first, then
// the Accept header (by quality, JSON on ties and by default).
func responseFormat(r *http.Request) resource.Format {
	switch strings.ToLower(r.URL.Query().Get("_format")) {
	case "yaml", "text/yaml", "application/yaml", "application/x-yaml":
		return resource.FormatYAML
	case "json", "application/json":
		return resource.FormatJSON
	}
	type choice struct {
		f resource.Format
		q float64
		i int
	}
	var choices []choice
	for i, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if qs, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(qs, 64); err == nil {
				q = v
			}
		}
		if q <= 0 {
			continue
		}
		if f, ok := resource.FormatFromMediaType(mt); ok {
			choices = append(choices, choice{f, q, i})
		} else if mt == "*/*" || mt == "application/*" {
			choices = append(choices, choice{resource.FormatJSON, q, i})
		}
	}
	sort.SliceStable(choices, func(a, b int) bool { return choices[a].q > choices[b].q })
	if len(choices) > 0 {
		return choices[0].f
	}
	return resource.FormatJSON
}

// write renders v in the negotiated format.
func (h *Handler) write(w http.ResponseWriter, r *http.Request, status int, v any) {
	var (
		body []byte
		err  error
		ct   string
	)
	if responseFormat(r) == resource.FormatYAML {
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err = enc.Encode(v); err == nil {
			err = enc.Close()
		}
		body, ct = buf.Bytes(), "text/yaml; charset=utf-8"
	} else {
		body, err = json.Marshal(v)
		body = append(body, '\n')
		ct = "application/json; charset=utf-8"
	}
	if err != nil {
		h.Logger.ErrorContext(r.Context(), "encode admin response", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// outcome writes an OperationOutcome with one issue.
func (h *Handler) outcome(w http.ResponseWriter, r *http.Request, status int, code, diagnostics string, expression ...string) {
	h.write(w, r, status, resource.NewOutcome(code, diagnostics, expression...))
}

// fail maps a service error to its status and OperationOutcome. Errors the
// client cannot act on are logged and shown as a plain "internal error".
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		ve *resource.ValidationError
		se *resource.SyntaxError
		ce *conflictError
		mb *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ve):
		h.write(w, r, http.StatusUnprocessableEntity, ve.Outcome())
	case errors.As(err, &se):
		h.write(w, r, http.StatusBadRequest, se.Outcome())
	case errors.As(err, &mb), errors.Is(err, resource.ErrTooLarge):
		h.outcome(w, r, http.StatusRequestEntityTooLarge, resource.CodeTooCostly, "the body exceeds 1 MiB")
	case errors.As(err, &ce):
		h.outcome(w, r, http.StatusConflict, ce.code, ce.msg, ce.path)
	case errors.Is(err, errNotFound), errors.Is(err, store.ErrNotFound):
		h.outcome(w, r, http.StatusNotFound, resource.CodeNotFound, "no such resource")
	case errors.Is(err, errPrecondition):
		h.outcome(w, r, http.StatusPreconditionFailed, resource.CodeConflict,
			"the resource's current version does not match If-Match; read it again and retry")
	case store.Unavailable(err):
		h.Logger.WarnContext(r.Context(), "admin request: storage unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		h.unavailable(w, r)
	default:
		h.Logger.ErrorContext(r.Context(), "admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		h.outcome(w, r, http.StatusInternalServerError, resource.CodeException, "internal error")
	}
}

// unavailable is the one answer for storage that cannot serve now (down,
// full, out of connections, or the request's deadline passed): 503 with
// Retry-After. A rejected write changed nothing, so the client may retry it.
func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", strconv.Itoa(int(store.RetryAfter.Seconds())))
	h.outcome(w, r, http.StatusServiceUnavailable, resource.CodeTransient,
		"storage is temporarily unavailable; nothing was changed; retry after Retry-After seconds")
}

// precondition is a parsed If-Match header.
type precondition struct {
	set     bool
	any     bool  // If-Match: *
	version int64 // 0 when the tag is not one of ours: never matches
}

// parseIfMatch accepts `3`, `"3"` and `W/"3"` (and `*`). Several tags
// separated by commas match if any does.
func parseIfMatch(h string) []precondition {
	h = strings.TrimSpace(h)
	if h == "" {
		return nil
	}
	var out []precondition
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			out = append(out, precondition{set: true, any: true})
			continue
		}
		tag = strings.TrimPrefix(tag, "W/")
		tag = strings.Trim(tag, `"`)
		v, err := strconv.ParseInt(tag, 10, 64)
		if err != nil || v < 1 {
			v = 0
		}
		out = append(out, precondition{set: true, version: v})
	}
	return out
}

// conditions is the whole If-Match header.
type conditions []precondition

// check returns errPrecondition unless there is no If-Match, or one of its
// tags matches the current state (exists, version).
func (c conditions) check(exists bool, version int64) error {
	if len(c) == 0 {
		return nil
	}
	for _, p := range c {
		if !exists {
			continue
		}
		if p.any || (p.version != 0 && p.version == version) {
			return nil
		}
	}
	return errPrecondition
}

func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }
