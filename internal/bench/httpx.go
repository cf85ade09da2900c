package bench

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Error kinds in the report.
const (
	kindTransport = "transport"
	kindAssertion = "assertion"
)

// failure is one failed request, by kind: "http NNN" (an unexpected
// status), "transport" (no HTTP answer) or "assertion" (an answer that is
// not what the flow needs). detail is for the operator; it never holds a
// secret, code or token.
type failure struct {
	kind, detail string
}

func (f *failure) Error() string { return f.kind + ": " + f.detail }

func httpFailure(status int, what string, body []byte) error {
	return &failure{kind: fmt.Sprintf("http %d", status), detail: what + ": " + snippet(body)}
}

func assertFailure(format string, args ...any) error {
	return &failure{kind: kindAssertion, detail: fmt.Sprintf(format, args...)}
}

func transportFailure(what string, err error) error {
	return &failure{kind: kindTransport, detail: what + ": " + err.Error()}
}

// kindOf classifies err for the report.
func kindOf(err error) (kind, detail string) {
	var f *failure
	if errors.As(err, &f) {
		return f.kind, f.detail
	}
	return kindTransport, err.Error()
}

var (
	tagPattern   = regexp.MustCompile(`<[^>]*>`)
	spacePattern = regexp.MustCompile(`\s+`)
)

// snippet is the start of a response body as one line of text, enough to
// tell an error page or OAuth error from another.
func snippet(body []byte) string {
	s := string(body)
	if i := strings.Index(s, `id="error"`); i >= 0 {
		s = s[i:]
	}
	s = tagPattern.ReplaceAllString(s, " ")
	s = strings.TrimSpace(spacePattern.ReplaceAllString(html.UnescapeString(s), " "))
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// newTransport is shared by every client of a run: keep-alive connections
// to one host, as many as workers.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// response is a fully read HTTP answer.
type response struct {
	status   int
	url      *url.URL // where a redirect chain ended
	location string   // Location of a redirect that left the server
	body     []byte
}

// do sends req with c and reads the whole body, so the connection is reused.
func do(c *http.Client, req *http.Request, what string) (response, error) {
	resp, err := c.Do(req)
	if err != nil {
		return response{}, transportFailure(what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return response{}, transportFailure(what, err)
	}
	return response{status: resp.StatusCode, url: resp.Request.URL, location: resp.Header.Get("Location"), body: body}, nil
}

// browser is one user's cookie-keeping client: it follows redirects inside
// the server and stops at the first one that leaves it (to the client's
// redirect URI), as a browser tab would hand over to the app.
type browser struct {
	base   string
	client *http.Client
}

func newBrowser(base string, host string, rt http.RoundTripper, timeout time.Duration) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: rt, Jar: jar, Timeout: timeout, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != host {
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return fmt.Errorf("more than 10 redirects, last to %s", req.URL.Path)
		}
		return nil
	}}
	return &browser{base: base, client: c}
}

func (b *browser) get(ctx context.Context, path, what string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+path, nil)
	if err != nil {
		return response{}, err
	}
	return do(b.client, req, what)
}

func (b *browser) post(ctx context.Context, path string, form url.Values, what string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(b.client, req, what)
}

var (
	csrfPattern       = regexp.MustCompile(`name="_csrf"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="_csrf"`)
	totpSecretPattern = regexp.MustCompile(`(?s)id="totp-secret"[^>]*>(.*?)<`)
)

// csrfOf returns the page's CSRF token.
func csrfOf(r response, page string) (string, error) {
	m := csrfPattern.FindSubmatch(r.body)
	if m == nil {
		return "", assertFailure("%s (%s, status %d) has no _csrf field: %s", page, r.url.Path, r.status, snippet(r.body))
	}
	tok := string(m[1])
	if tok == "" {
		tok = string(m[2])
	}
	return html.UnescapeString(tok), nil
}

// expectPage checks that a redirect chain ended on path with 200.
func expectPage(r response, path, step string) error {
	if r.status != http.StatusOK {
		return httpFailure(r.status, step+" ended at "+r.url.Path, r.body)
	}
	if r.url.Path != path {
		return assertFailure("%s: expected %s, ended at %s: %s", step, path, r.url.Path, snippet(r.body))
	}
	return nil
}
