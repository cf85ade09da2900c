package policy

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/notify"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Policy is what applies to one sign-in: the client it is for (the zero
// Client when none is named) and the AuthConfig that applies to it.
type Policy struct {
	Client     resource.Client
	AuthConfig resource.AuthConfig
	// ServerSMTP is the mail server of Gatehouse's configuration, used
	// when the AuthConfig names none (the zero SMTP: none).
	ServerSMTP notify.SMTP
}

// SecondFactorRequired reports whether every user must pass a second
// factor for this client: the Client's own twoFactor.required when it says
// (true or false), else its AuthConfig's, else no.
func (p Policy) SecondFactorRequired() bool {
	if req, set := p.Client.TwoFactorRequired(); set {
		return req
	}
	return p.AuthConfig.TwoFactorRequired()
}

// Methods are the factor strategies that may prove the second factor of
// this client's sign-ins: the Client's twoFactor.methods when it lists
// any, else its AuthConfig's; nil allows every registered factor.
func (p Policy) Methods() []string {
	if m := p.Client.TwoFactorMethods(); len(m) > 0 {
		return m
	}
	if m := p.AuthConfig.TwoFactorMethods(); len(m) > 0 {
		return m
	}
	return nil
}

// Allows reports whether strategy may prove the second factor.
func (p Policy) Allows(strategy string) bool {
	m := p.Methods()
	return m == nil || slices.Contains(m, strategy)
}

// RequiredACR is the weakest level a browser sign-in for this client must
// reach (Client auth.authorization_code.required_acr; "" for none).
func (p Policy) RequiredACR() string {
	if a := p.Client.Auth; a != nil && a.AuthorizationCode != nil {
		return a.AuthorizationCode.RequiredACR
	}
	return ""
}

// RememberDeviceFor is how long a browser may skip the second factor after
// the user asked to remember it (AuthConfig twoFactor.rememberDevice); 0
// when it may not. Turning the setting off stops every remembered browser
// at once; shortening it shortens them.
func (p Policy) RememberDeviceFor() time.Duration { return p.AuthConfig.RememberDeviceFor() }

// EnrolmentGrace is how long a user without a second factor may skip
// enrolling one that this policy requires (AuthConfig
// twoFactor.gracePeriod), counted from the first sign-in where it applied;
// 0 for none.
func (p Policy) EnrolmentGrace() time.Duration { return p.AuthConfig.EnrolmentGrace() }

// PastSteps is the TOTP window of past steps (AuthConfig validPastTokensCount).
func (p Policy) PastSteps() int { return p.AuthConfig.PastTokens() }

// Webhook is where codes are delivered; the zero value when nowhere.
// E-mail codes go over SMTP when Mail is set: the AuthConfig's
// email.smtp, else the server's.
func (p Policy) Webhook() notify.Webhook {
	var out notify.Webhook
	if w := p.AuthConfig.Webhook(); w != nil {
		out = notify.Webhook{Endpoint: w.Endpoint, TimeoutMS: w.Timeout, Headers: w.Headers, Secret: w.Secret}
	}
	if m := p.Mail(); m.Configured() {
		out.Mail = &m
	}
	out.Messages = p.AuthConfig.Messages
	return out
}

// Mail is the SMTP server e-mail goes through: the AuthConfig's
// email.smtp when it has one, else the server's; the zero SMTP when none.
// The password is as stored (sealed for an AuthConfig's).
func (p Policy) Mail() notify.SMTP {
	if sm := p.AuthConfig.SMTP(); sm != nil {
		return notify.SMTP{Host: sm.Host, Port: sm.Port, Username: sm.Username, Password: sm.Password,
			TLS: sm.TLS, From: p.AuthConfig.Email.From, TimeoutMS: sm.Timeout}
	}
	return p.ServerSMTP
}

// CanDeliverCodes reports whether a code can be sent to the user at all
// (by webhook, or e-mail codes by SMTP).
func (p Policy) CanDeliverCodes() bool {
	w := p.Webhook()
	return w.Endpoint != "" || w.Mail != nil
}

// CanDeliver reports whether codes of method (resource.MethodSMS,
// MethodEmail) can be sent: by the webhook, or e-mail codes by SMTP.
func (p Policy) CanDeliver(method string) bool {
	if p.Webhook().Endpoint != "" {
		return true
	}
	return method == resource.MethodEmail && p.Mail().Configured()
}

// Resolver resolves and caches policies. The zero TTL keeps nothing
// between requests (the request memo of package resource still serves a
// request once). TTL is set before first use and changed only through
// ForgetAndKeep. A cached AuthConfig is used for at most TTL; Forget drops
// every entry at once, and a resolution that began before a Forget does not
// store its (possibly old) result.
type Resolver struct {
	Store store.Store
	// SMTP is the server's mail server, put into every Policy (ServerSMTP).
	SMTP notify.SMTP
	TTL  time.Duration
	Now  func() time.Time

	mu    sync.Mutex
	gen   uint64
	cache map[string]cached // by the client's AuthConfig reference; "" = none
}

type cached struct {
	ac      resource.AuthConfig
	expires time.Time
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// For is the policy of a sign-in for c (the zero Client: no client).
func (r *Resolver) For(ctx context.Context, c resource.Client) (Policy, error) {
	ac, err := r.AuthConfig(ctx, c)
	if err != nil {
		return Policy{}, err
	}
	return Policy{Client: c, AuthConfig: ac, ServerSMTP: r.SMTP}, nil
}

// AuthConfig is the AuthConfig that applies to c. A Client that names a
// missing AuthConfig is an error (wrapping store.ErrNotFound), never a
// silent fallback that could drop a required second factor.
func (r *Resolver) AuthConfig(ctx context.Context, c resource.Client) (resource.AuthConfig, error) {
	ref := ""
	if c.AuthConfig != nil {
		ref = c.AuthConfig.ID
	}
	r.mu.Lock()
	e, ok := r.cache[ref]
	gen, ttl := r.gen, r.TTL
	r.mu.Unlock()
	if ok && r.now().Before(e.expires) {
		return e.ac.Clone(), nil
	}
	ac, err := resource.ResolveAuthConfig(ctx, r.Store, c)
	if err != nil {
		return resource.AuthConfig{}, fmt.Errorf("resolve auth config: %w", err)
	}
	if ttl > 0 {
		r.mu.Lock()
		if r.gen == gen {
			if r.cache == nil {
				r.cache = map[string]cached{}
			}
			r.cache[ref] = cached{ac: ac.Clone(), expires: r.now().Add(ttl)}
		}
		r.mu.Unlock()
	}
	return ac, nil
}

// ForgetAndKeep is Forget, and keeps what is resolved from now on for ttl
// (the Resolver's TTL until then): a process that hears every other
// process's writes can keep policies longer.
func (r *Resolver) ForgetAndKeep(ttl time.Duration) {
	r.mu.Lock()
	r.gen++
	r.cache = nil
	r.TTL = ttl
	r.mu.Unlock()
}

// Forget drops every cached resolution. The admin API calls it after any
// write of a Client or an AuthConfig (an AuthConfig named `default`, or the
// only one, applies to clients that name none, so a change to any of them
// may move every client).
func (r *Resolver) Forget() {
	r.mu.Lock()
	r.gen++
	r.cache = nil
	r.mu.Unlock()
}
