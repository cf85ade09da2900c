package resource

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gatehouse/gatehouse/internal/store"
)

// A request memo remembers the Clients and the AuthConfig resolutions one
// request has read, so that the hosted pages, the second-factor check and
// the OAuth adapter (which fosite asks for the same client several times
// per token request) read each once per request. It lives in the request's
// context and ends with it: nothing is shared between requests, so a
// changed Client or AuthConfig applies from the next request on, in this
// process and every other (DESIGN §7: a process may cache, but a cache
// never decides alone).
//
// Install it only around work that does not write Clients or AuthConfigs
// (the admin API does not use it): the memo is not told about writes.
type requestMemo struct {
	mu          sync.Mutex
	clients     map[string]memoClient
	authConfigs map[string]AuthConfig // by the client's AuthConfig reference; "" = none
}

type memoClient struct {
	sc  StoredClient
	err error // a missing client (store.ErrNotFound) is remembered too
}

type memoKey struct{}

// ErrUndecodable marks a stored record whose document does not decode (as
// opposed to a database that did not answer).
var ErrUndecodable = errors.New("stored record does not decode")

// WithRequestMemo returns ctx carrying a fresh request memo, or ctx itself
// when it already carries one.
func WithRequestMemo(ctx context.Context) context.Context {
	if memoOf(ctx) != nil {
		return ctx
	}
	return context.WithValue(ctx, memoKey{}, &requestMemo{})
}

func memoOf(ctx context.Context) *requestMemo {
	m, _ := ctx.Value(memoKey{}).(*requestMemo)
	return m
}

// StoredClient is a client record with its decoded resource
// (ClientFromStore: SecretHash set, Secret empty).
type StoredClient struct {
	Record store.Client
	Client Client
}

// FetchClient reads client id and decodes it, once per request when ctx
// carries a request memo. A missing client is an error wrapping
// store.ErrNotFound, one that does not decode wraps ErrUndecodable.
func FetchClient(ctx context.Context, st store.Store, id string) (StoredClient, error) {
	m := memoOf(ctx)
	if m != nil {
		m.mu.Lock()
		e, ok := m.clients[id]
		m.mu.Unlock()
		if ok {
			return e.sc, e.err
		}
	}
	sc, err := fetchClient(ctx, st, id)
	if m != nil && (err == nil || errors.Is(err, store.ErrNotFound)) {
		m.mu.Lock()
		if m.clients == nil {
			m.clients = map[string]memoClient{}
		}
		m.clients[id] = memoClient{sc: sc, err: err}
		m.mu.Unlock()
	}
	return sc, err
}

func fetchClient(ctx context.Context, st store.Store, id string) (StoredClient, error) {
	rec, err := st.GetClient(ctx, id)
	if err != nil {
		return StoredClient{}, fmt.Errorf("get client %q: %w", id, err)
	}
	c, err := ClientFromStore(rec)
	if err != nil {
		return StoredClient{}, fmt.Errorf("decode client %q: %w: %w", id, ErrUndecodable, err)
	}
	return StoredClient{Record: rec, Client: c}, nil
}

func (m *requestMemo) authConfig(ref string) (AuthConfig, bool) {
	if m == nil {
		return AuthConfig{}, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.authConfigs[ref]
	if !ok {
		return AuthConfig{}, false
	}
	return a.clone(), true
}

func (m *requestMemo) rememberAuthConfig(ref string, a AuthConfig) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.authConfigs == nil {
		m.authConfigs = map[string]AuthConfig{}
	}
	m.authConfigs[ref] = a.clone()
}
