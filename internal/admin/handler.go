package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// Handler serves the admin REST API and applies resource files for the CLI.
type Handler struct {
	Store  store.Store
	Hasher *secret.PasswordHasher
	// Sealer seals webhook secrets at rest (the at-rest key, as for TOTP
	// secrets); nil stores them as given.
	Sealer *secret.Sealer
	Audit  *audit.Recorder
	Logger *slog.Logger
	Now    func() time.Time
	// TwoFactor checks and spends the verification codes a User write
	// carries (phoneVerificationCode, emailVerificationCode); without it
	// such writes fail.
	TwoFactor *twofactor.Service
	// ServerSMTP is the SMTP server of the server's configuration (the zero
	// value: none); with it, e-mail codes can be delivered without a webhook.
	ServerSMTP notify.SMTP

	// AdminUser and AdminPasswordHash (an argon2id PHC string) are the
	// bootstrap credentials for HTTP Basic. An empty hash refuses Basic.
	AdminUser         string
	AdminPasswordHash string
	// VerifyBearer checks an access token and returns its client and
	// scopes; nil means Bearer tokens are not accepted. The token must carry
	// the gatehouse:admin scope.
	VerifyBearer func(ctx context.Context, token string) (clientID string, scopes []string, err error)
	// ClientChanged, when set, is told the id of every client this handler
	// has just changed or deleted (the token endpoint caches clients).
	ClientChanged func(id string)
	// SessionsEnded, when set, is told of the browser sessions a write or
	// delete of a User ended, after it committed (back-channel logout).
	SessionsEnded func(ctx context.Context, userID string, ended []store.BrowserSession)
	// PolicyChanged, when set, is told of every write or delete of a Client
	// or an AuthConfig (the sign-in policy cache forgets what it holds).
	PolicyChanged func()
	// Options are the validation switches (Dev, AllowPrivate).
	Options resource.Options
	// RequestID, when set, names the request in audit events; otherwise the
	// X-Request-Id response header (set by the server's middleware) is used.
	RequestID func(r *http.Request) string

	authOnce  sync.Once
	authKey   []byte // per-process key for the credential cache
	authMu    sync.Mutex
	authCache map[string]time.Time // HMAC of verified credentials → expiry
}

// Listing limits.
const (
	defaultCount = 50
	maxCount     = 1000
)

// Register adds the admin routes to mux. The patterns are explicit per type,
// so they never shadow the hosted pages' routes.
func (h *Handler) Register(mux *http.ServeMux) {
	for _, typ := range []string{resource.TypeUser, resource.TypeClient, resource.TypeAuthConfig} {
		mux.Handle("PUT /"+typ+"/{id}", h.authenticated(h.handlePut(typ)))
		mux.Handle("GET /"+typ+"/{id}", h.authenticated(h.handleGet(typ)))
		mux.Handle("DELETE /"+typ+"/{id}", h.authenticated(h.handleDelete(typ)))
		mux.Handle("GET /"+typ, h.authenticated(h.handleList(typ)))
	}
	mux.Handle("GET /AuditEvent", h.authenticated(http.HandlerFunc(h.handleAudit)))
	h.registerDevices(mux)
}

type actorKey struct{}

func actorFrom(ctx context.Context) actor {
	a, _ := ctx.Value(actorKey{}).(actor)
	return a
}

func (h *Handler) handlePut(typ string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		format, ok := requestFormat(r)
		if !ok {
			h.outcome(w, r, http.StatusUnsupportedMediaType, resource.CodeNotSupported,
				"send application/json, text/yaml, application/yaml or application/x-yaml")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, resource.MaxBodyBytes))
		if err != nil {
			var mb *http.MaxBytesError
			if !errors.As(err, &mb) {
				err = &resource.SyntaxError{Msg: "could not read the body"}
			}
			h.fail(w, r, err)
			return
		}
		if format == 0 {
			format = sniff(body)
		}
		v, err := decodeFor(typ, id, body, format)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		out, created, err := h.put(r.Context(), v, parseIfMatch(r.Header.Get("If-Match")), actorFrom(r.Context()))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		status := http.StatusOK
		if created {
			status = http.StatusCreated
			w.Header().Set("Location", "/"+typ+"/"+url.PathEscape(id))
		}
		h.writeView(w, r, status, out)
	})
}

// decodeFor parses a PUT body for typ. The id in the URL wins over one in
// the body; a resourceType in the body must name typ.
func decodeFor(typ, id string, body []byte, format resource.Format) (any, error) {
	tree, err := resource.Parse(body, format)
	if err != nil {
		return nil, err
	}
	if rt, ok := tree["resourceType"]; ok && rt != nil && rt != typ {
		return nil, resource.Invalid("resourceType", resource.CodeValue, "must be "+typ+" (the type in the URL)")
	}
	tree["id"] = id
	return resource.DecodeAs(typ, tree)
}

// requestFormat reads Content-Type. An absent one is sniffed later (format 0);
// anything other than JSON or YAML is not ok (415).
func requestFormat(r *http.Request) (resource.Format, bool) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return 0, true
	}
	return resource.FormatFromMediaType(ct)
}

// sniff guesses the format of a body sent without Content-Type: a JSON
// object starts with '{'; anything else is read as YAML.
func sniff(body []byte) resource.Format {
	if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return resource.FormatJSON
	}
	return resource.FormatYAML
}

func (h *Handler) handleGet(typ string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := h.get(r.Context(), typ, r.PathValue("id"))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.writeView(w, r, http.StatusOK, v)
	})
}

func (h *Handler) handleDelete(typ string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := h.remove(r.Context(), typ, r.PathValue("id"), parseIfMatch(r.Header.Get("If-Match")), actorFrom(r.Context()))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.write(w, r, http.StatusOK, v.res)
	})
}

func (h *Handler) writeView(w http.ResponseWriter, r *http.Request, status int, v view) {
	w.Header().Set("ETag", etag(v.version))
	if !v.updated.IsZero() {
		w.Header().Set("Last-Modified", v.updated.UTC().Format(http.TimeFormat))
	}
	h.write(w, r, status, v.res)
}

// Bundle is a page of a listing, shaped like a FHIR searchset Bundle.
type Bundle struct {
	ResourceType string        `json:"resourceType" yaml:"resourceType"`
	Type         string        `json:"type" yaml:"type"`
	Total        int           `json:"total" yaml:"total"`
	Link         []BundleLink  `json:"link,omitempty" yaml:"link,omitempty"`
	Entry        []BundleEntry `json:"entry" yaml:"entry"`
}

// BundleLink points at this page and the next one.
type BundleLink struct {
	Relation string `json:"relation" yaml:"relation"`
	URL      string `json:"url" yaml:"url"`
}

// BundleEntry holds one resource of a Bundle.
type BundleEntry struct {
	Resource any `json:"resource" yaml:"resource"`
}

// page reads _count (default 50, at most 1000) and _page (from 1).
func page(r *http.Request) (store.Page, error) {
	q := r.URL.Query()
	p := store.Page{Count: defaultCount, Page: 1}
	if s := q.Get("_count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return p, resource.Invalid("_count", resource.CodeValue, "_count must be a whole number from 1")
		}
		p.Count = min(n, maxCount)
	}
	if s := q.Get("_page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1<<20 {
			return p, resource.Invalid("_page", resource.CodeValue, "_page must be a whole number from 1")
		}
		p.Page = n
	}
	return p, nil
}

func (h *Handler) handleList(typ string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := page(r)
		if err != nil {
			h.badQuery(w, r, err)
			return
		}
		items, total, err := h.list(r.Context(), typ, p)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		h.write(w, r, http.StatusOK, bundle(r, p, items, total))
	})
}

// badQuery answers an invalid query parameter with 400 (not 422: there is
// no resource, the request itself is malformed).
func (h *Handler) badQuery(w http.ResponseWriter, r *http.Request, err error) {
	var ve *resource.ValidationError
	if errors.As(err, &ve) {
		h.write(w, r, http.StatusBadRequest, ve.Outcome())
		return
	}
	h.fail(w, r, err)
}

func bundle(r *http.Request, p store.Page, items []any, total int) Bundle {
	b := Bundle{ResourceType: "Bundle", Type: "searchset", Total: total, Entry: make([]BundleEntry, 0, len(items))}
	for _, it := range items {
		b.Entry = append(b.Entry, BundleEntry{Resource: it})
	}
	link := func(n int) string {
		q := r.URL.Query()
		q.Set("_count", strconv.Itoa(p.Count))
		q.Set("_page", strconv.Itoa(n))
		return r.URL.Path + "?" + q.Encode()
	}
	b.Link = append(b.Link, BundleLink{Relation: "self", URL: link(p.Page)})
	if p.Offset()+len(items) < total {
		b.Link = append(b.Link, BundleLink{Relation: "next", URL: link(p.Page + 1)})
	}
	return b
}

// AuditEvent is a stored audit event as the API shows it.
type AuditEvent struct {
	ResourceType string            `json:"resourceType" yaml:"resourceType"`
	ID           string            `json:"id" yaml:"id"`
	Recorded     time.Time         `json:"recorded" yaml:"recorded"`
	Type         string            `json:"type" yaml:"type"`
	User         string            `json:"user,omitempty" yaml:"user,omitempty"`
	Client       string            `json:"client,omitempty" yaml:"client,omitempty"`
	RemoteAddr   string            `json:"remoteAddr,omitempty" yaml:"remoteAddr,omitempty"`
	RequestID    string            `json:"requestId,omitempty" yaml:"requestId,omitempty"`
	Detail       map[string]string `json:"detail,omitempty" yaml:"detail,omitempty"`
}

func (h *Handler) handleAudit(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		h.badQuery(w, r, err)
		return
	}
	q := r.URL.Query()
	events, total, err := h.Store.ListAudit(r.Context(), store.AuditFilter{UserID: q.Get("user"), Type: q.Get("type")}, p)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	items := make([]any, 0, len(events))
	for _, e := range events {
		items = append(items, AuditEvent{ResourceType: "AuditEvent", ID: e.ID, Recorded: e.Time.UTC(), Type: e.Type,
			User: e.UserID, Client: e.ClientID, RemoteAddr: e.RemoteAddr, RequestID: e.RequestID, Detail: e.Detail})
	}
	h.write(w, r, http.StatusOK, bundle(r, p, items, total))
}

// remoteHost is the client address without port.
func remoteHost(r *http.Request) string {
	// The server's middleware resolved the client behind trusted proxies.
	if addr := audit.RemoteAddr(r.Context()); addr != "" {
		return addr
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
