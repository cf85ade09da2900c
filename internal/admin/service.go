package admin

import (
	"context"
	"errors"
	"fmt"
	"github.com/gatehouse/gatehouse/internal/account"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/secret"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

// actor is who made an admin change, for the audit log.
type actor struct {
	name      string // "basic:<user>", "client:<id>" (Bearer) or "apply" (CLI)
	remote    string
	requestID string
}

// view is a resource as the API shows it, with what the ETag needs.
type view struct {
	res     any
	version int64
	updated time.Time
}

// maxWriteAttempts bounds retries of a write that lost a race with another
// writer of the same resource when the caller sent no If-Match.
const maxWriteAttempts = 3

func (h *Handler) now() time.Time {
	if h.Now == nil {
		return time.Now().UTC()
	}
	return h.Now().UTC()
}

// errLostRace marks a Put that failed its version check because another
// writer got in between our read and our write.
var errLostRace = errors.New("concurrent write")

// writeTx runs one read-check-write transaction. Without If-Match a lost
// race is retried (the whole transaction re-reads); with If-Match it is the
// client's 412.
func (h *Handler) writeTx(ctx context.Context, conds conditions, fn func(ctx context.Context) error) error {
	var err error
	for range maxWriteAttempts {
		err = h.Store.InTx(ctx, fn)
		if !errors.Is(err, errLostRace) {
			return err
		}
		if len(conds) > 0 {
			return errPrecondition
		}
	}
	return &conflictError{code: resource.CodeConflict, msg: "the resource is being changed by another request; retry"}
}

// lostRace marks a store Put's version conflict as a lost race.
func lostRace(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%w: %w", errLostRace, err)
	}
	return err
}

// put creates or replaces the resource v (*resource.User, *resource.Client or
// *resource.AuthConfig), after validating it with h.Options.
func (h *Handler) put(ctx context.Context, v any, conds conditions, who actor) (view, bool, error) {
	switch r := v.(type) {
	case *resource.User:
		return h.putUser(ctx, *r, conds, who)
	case *resource.Client:
		return h.putClient(ctx, *r, conds, who)
	case *resource.AuthConfig:
		return h.putAuthConfig(ctx, *r, conds, who)
	}
	return view{}, false, fmt.Errorf("put: unexpected resource %T", v)
}

func (h *Handler) putUser(ctx context.Context, u resource.User, conds conditions, who actor) (view, bool, error) {
	u.Normalize()
	if err := u.Validate(ctx, h.Options); err != nil {
		return view{}, false, err
	}
	hash, err := h.userPasswordHash(ctx, u)
	if err != nil {
		return view{}, false, err
	}
	codes, err := h.beginDestinationCodes(ctx, u, who)
	if err != nil {
		return view{}, false, err
	}
	var (
		stored   store.User
		created  bool
		factor   factorChange
		defaults defaultFactor
		// devicesForgotten counts the remembered browsers new credentials ended.
		devicesForgotten int64
		ended            []store.BrowserSession
	)
	err = h.writeTx(ctx, conds, func(ctx context.Context) error {
		factor, defaults, devicesForgotten = factorChange{}, defaultFactor{}, 0
		existing, err := h.Store.GetUser(ctx, u.ID)
		var ex *store.User
		switch {
		case err == nil:
			ex = &existing
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("get user %q: %w", u.ID, err)
		}
		if err := conds.check(ex != nil, existing.Version); err != nil {
			return err
		}
		// The codes are spent in this transaction: a write refused
		// later leaves them unspent, and a refused code stores nothing.
		w := u
		if err := spendDestinationCodes(ctx, codes, &w); err != nil {
			return err
		}
		rec, err := resource.ToStoreUser(w, hash, ex)
		if err != nil {
			return err
		}
		if rec.Email != "" {
			other, err := h.Store.FindUser(ctx, rec.Email)
			switch {
			case err == nil && other.ID != u.ID:
				return &conflictError{path: "email", code: resource.CodeDuplicate, msg: "this e-mail address belongs to another user"}
			case err != nil && !errors.Is(err, store.ErrNotFound):
				return fmt.Errorf("find user by e-mail: %w", err)
			}
		}
		if factor, err = h.planUserTwoFactor(ctx, w, rec); err != nil {
			return err
		}
		var version int64
		if ex != nil {
			version = ex.Version
		}
		stored, created, err = h.Store.PutUser(ctx, rec, version)
		if err != nil {
			return lostRace(fmt.Errorf("put user %q: %w", u.ID, err))
		}
		if err := h.applyFactorChange(ctx, u.ID, factor); err != nil {
			return err
		}
		// A create that says nothing about twoFactor gets the AuthConfig's
		// defaultMethod; one that does (enabled: false) opts out.
		if created && u.TwoFactor == nil {
			if defaults, err = h.applyDefaultMethod(ctx, stored); err != nil {
				return err
			}
		}
		// New credentials (password, second factor reset or changed) end
		// what the old ones gave: browser sessions and every access and
		// refresh token (OAuth 2.0 Security BCP §4.14).
		if hash != "" || rec.Inactive || factor.changed() {
			if ended, err = h.endingSessions(ctx, u.ID); err != nil {
				return err
			}
			if devicesForgotten, err = account.EndCredentials(ctx, h.Store, u.ID, account.Keep{}); err != nil {
				return err
			}
		}
		return nil
	})
	h.finishDestinationCodes(ctx, codes, err == nil, who, u.ID, stored.Version)
	if err != nil {
		return view{}, false, err
	}
	h.sessionsEnded(ctx, u.ID, ended)
	detail := map[string]string{}
	if hash != "" {
		detail["passwordChanged"] = "true"
	}
	if u.PasswordHash != "" {
		detail["passwordImported"] = "true"
	}
	if stored.Inactive {
		detail["inactive"] = "true"
	}
	if defaults.method != "" {
		detail["twoFactorDefault"] = defaults.outcome()
	}
	if o := factor.outcome(); o != "" {
		detail["twoFactor"] = o
	}
	verifiedByCode(codes, detail)
	h.record(ctx, audit.AdminWrite, who, resource.TypeUser, u.ID, stored.Version, created, detail)
	if devicesForgotten > 0 {
		h.record(ctx, audit.DeviceRevoked, who, resource.TypeUser, u.ID, stored.Version, false,
			map[string]string{"device": "all", "count": strconv.FormatInt(devicesForgotten, 10), "by": "credentials_changed"})
	}
	h.recordFactorChange(ctx, who, u.ID, stored.Version, factor)
	if defaults.enabled {
		h.record(ctx, audit.TwoFactorEnabled, who, resource.TypeUser, u.ID, stored.Version, false, map[string]string{
			"method": defaults.method, "destination": twofactor.MaskDestination(defaults.destination), "by": "defaultMethod",
		})
	}
	v, _, err := h.userView(ctx, stored)
	return v, created, err
}

// userPasswordHash is the PHC string a User write sets: an imported
// passwordHash as given (once its cost is within bounds), else the hash of
// password, else "" (keep the stored one). It runs before the transaction:
// argon2 is slow and must not hold locks.
func (h *Handler) userPasswordHash(ctx context.Context, u resource.User) (string, error) {
	if u.PasswordHash != "" {
		configured := secret.DefaultArgon2
		if h.Hasher != nil {
			configured = h.Hasher.Params
		}
		if err := resource.CheckPasswordHashCost(u.PasswordHash, configured); err != nil {
			return "", err
		}
		return u.PasswordHash, nil
	}
	return resource.HashWriteOnly(ctx, h.Hasher, u.Password)
}

func (h *Handler) putClient(ctx context.Context, c resource.Client, conds conditions, who actor) (view, bool, error) {
	if err := c.Validate(ctx, h.Options); err != nil {
		return view{}, false, err
	}
	hash, err := resource.HashWriteOnly(ctx, h.Hasher, c.Secret)
	if err != nil {
		return view{}, false, err
	}
	var (
		stored  store.Client
		created bool
	)
	err = h.writeTx(ctx, conds, func(ctx context.Context) error {
		existing, err := h.Store.GetClient(ctx, c.ID)
		var ex *store.Client
		switch {
		case err == nil:
			ex = &existing
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("get client %q: %w", c.ID, err)
		}
		if err := conds.check(ex != nil, existing.Version); err != nil {
			return err
		}
		if ref := c.AuthConfig; ref != nil {
			_, err := h.Store.GetAuthConfig(ctx, ref.ID)
			if errors.Is(err, store.ErrNotFound) {
				return resource.Invalid("authConfig.id", resource.CodeValue, fmt.Sprintf("no AuthConfig %q exists (create it first)", ref.ID))
			}
			if err != nil {
				return fmt.Errorf("get auth config %q: %w", ref.ID, err)
			}
		}
		rec, err := resource.ToStoreClient(c, hash, ex)
		if err != nil {
			return err
		}
		var version int64
		if ex != nil {
			version = ex.Version
		}
		stored, created, err = h.Store.PutClient(ctx, rec, version)
		if err != nil {
			return lostRace(fmt.Errorf("put client %q: %w", c.ID, err))
		}
		return nil
	})
	if err != nil {
		return view{}, false, err
	}
	h.clientChanged(c.ID)
	var detail map[string]string
	if hash != "" {
		detail = map[string]string{"secretChanged": "true"}
	}
	h.record(ctx, audit.AdminWrite, who, resource.TypeClient, c.ID, stored.Version, created, detail)
	v, _, err := clientView(stored)
	return v, created, err
}

func (h *Handler) putAuthConfig(ctx context.Context, a resource.AuthConfig, conds conditions, who actor) (view, bool, error) {
	if err := a.Validate(ctx, h.Options); err != nil {
		return view{}, false, err
	}
	var (
		stored  store.AuthConfig
		created bool
	)
	err := h.writeTx(ctx, conds, func(ctx context.Context) error {
		existing, err := h.Store.GetAuthConfig(ctx, a.ID)
		var ex *store.AuthConfig
		switch {
		case err == nil:
			ex = &existing
		case !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("get auth config %q: %w", a.ID, err)
		}
		if err := conds.check(ex != nil, existing.Version); err != nil {
			return err
		}
		rec, err := resource.ToStoreAuthConfig(a.SealSecrets(h.Sealer), ex)
		if err != nil {
			return err
		}
		var version int64
		if ex != nil {
			version = ex.Version
		}
		stored, created, err = h.Store.PutAuthConfig(ctx, rec, version)
		if err != nil {
			return lostRace(fmt.Errorf("put auth config %q: %w", a.ID, err))
		}
		return nil
	})
	if err != nil {
		return view{}, false, err
	}
	var detail map[string]string
	if w := a.Webhook(); w != nil && w.Secret != "" {
		detail = map[string]string{"webhookSecretChanged": "true"}
	}
	h.policyChanged()
	h.record(ctx, audit.AdminWrite, who, resource.TypeAuthConfig, a.ID, stored.Version, created, detail)
	v, _, err := authConfigView(stored)
	return v, created, err
}

// get reads one resource as the API shows it.
func (h *Handler) get(ctx context.Context, typ, id string) (view, error) {
	if resource.ValidateID(id) != nil {
		return view{}, errNotFound
	}
	switch typ {
	case resource.TypeUser:
		rec, err := h.Store.GetUser(ctx, id)
		if err != nil {
			return view{}, notFound(err, "get user %q", id)
		}
		v, _, err := h.userView(ctx, rec)
		return v, err
	case resource.TypeClient:
		rec, err := h.Store.GetClient(ctx, id)
		if err != nil {
			return view{}, notFound(err, "get client %q", id)
		}
		v, _, err := clientView(rec)
		return v, err
	case resource.TypeAuthConfig:
		rec, err := h.Store.GetAuthConfig(ctx, id)
		if err != nil {
			return view{}, notFound(err, "get auth config %q", id)
		}
		v, _, err := authConfigView(rec)
		return v, err
	}
	return view{}, errNotFound
}

func notFound(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// list reads one page of a resource type.
func (h *Handler) list(ctx context.Context, typ string, p store.Page) ([]any, int, error) {
	var out []any
	switch typ {
	case resource.TypeUser:
		recs, total, err := h.Store.ListUsers(ctx, p)
		if err != nil {
			return nil, 0, fmt.Errorf("list users: %w", err)
		}
		for _, rec := range recs {
			v, _, err := h.userView(ctx, rec)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, v.res)
		}
		return out, total, nil
	case resource.TypeClient:
		recs, total, err := h.Store.ListClients(ctx, p)
		if err != nil {
			return nil, 0, fmt.Errorf("list clients: %w", err)
		}
		for _, rec := range recs {
			v, _, err := clientView(rec)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, v.res)
		}
		return out, total, nil
	case resource.TypeAuthConfig:
		recs, total, err := h.Store.ListAuthConfigs(ctx, p)
		if err != nil {
			return nil, 0, fmt.Errorf("list auth configs: %w", err)
		}
		for _, rec := range recs {
			v, _, err := authConfigView(rec)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, v.res)
		}
		return out, total, nil
	}
	return nil, 0, errNotFound
}

// remove deletes a resource and returns what it was.
func (h *Handler) remove(ctx context.Context, typ, id string, conds conditions, who actor) (view, error) {
	if resource.ValidateID(id) != nil {
		return view{}, errNotFound
	}
	var v view
	var ended []store.BrowserSession
	err := h.Store.InTx(ctx, func(ctx context.Context) error {
		switch typ {
		case resource.TypeUser:
			rec, err := h.Store.GetUser(ctx, id)
			if err != nil {
				return notFound(err, "get user %q", id)
			}
			if err := conds.check(true, rec.Version); err != nil {
				return err
			}
			if ended, err = h.endingSessions(ctx, id); err != nil {
				return err
			}
			if v, _, err = h.userView(ctx, rec); err != nil {
				return err
			}
			if err := h.Store.DeactivateOAuthRequestsBySubject(ctx, id); err != nil {
				return fmt.Errorf("deactivate tokens of %q: %w", id, err)
			}
			if err := h.Store.DeleteUser(ctx, id); err != nil {
				return notFound(err, "delete user %q", id)
			}
		case resource.TypeClient:
			rec, err := h.Store.GetClient(ctx, id)
			if err != nil {
				return notFound(err, "get client %q", id)
			}
			if err := conds.check(true, rec.Version); err != nil {
				return err
			}
			if v, _, err = clientView(rec); err != nil {
				return err
			}
			if err := h.Store.DeleteClient(ctx, id); err != nil {
				return notFound(err, "delete client %q", id)
			}
		case resource.TypeAuthConfig:
			rec, err := h.Store.GetAuthConfig(ctx, id)
			if err != nil {
				return notFound(err, "get auth config %q", id)
			}
			if err := conds.check(true, rec.Version); err != nil {
				return err
			}
			if err := h.refuseIfReferenced(ctx, id); err != nil {
				return err
			}
			if v, _, err = authConfigView(rec); err != nil {
				return err
			}
			if err := h.Store.DeleteAuthConfig(ctx, id); err != nil {
				return notFound(err, "delete auth config %q", id)
			}
		default:
			return errNotFound
		}
		return nil
	})
	if err != nil {
		return view{}, err
	}
	if typ == resource.TypeClient {
		h.clientChanged(id)
	}
	if typ == resource.TypeUser {
		h.sessionsEnded(ctx, id, ended)
	}
	if typ == resource.TypeAuthConfig {
		h.policyChanged()
	}
	h.record(ctx, audit.AdminDelete, who, typ, id, v.version, false, nil)
	return v, nil
}

// maxEndedSessions bounds the sessions whose clients are told of one
// write's logout: a user with more has the rest end silently.
const maxEndedSessions = 100

// endingSessions reads the sessions a write is about to end, when someone
// listens for them.
func (h *Handler) endingSessions(ctx context.Context, userID string) ([]store.BrowserSession, error) {
	if h.SessionsEnded == nil {
		return nil, nil
	}
	ss, err := h.Store.ListBrowserSessionsByUser(ctx, userID, maxEndedSessions)
	if err != nil {
		return nil, fmt.Errorf("list sessions of %q: %w", userID, err)
	}
	return ss, nil
}

func (h *Handler) sessionsEnded(ctx context.Context, userID string, ended []store.BrowserSession) {
	if h.SessionsEnded != nil && len(ended) > 0 {
		h.SessionsEnded(ctx, userID, ended)
	}
}

func (h *Handler) clientChanged(id string) {
	if h.ClientChanged != nil {
		h.ClientChanged(id)
	}
	h.policyChanged()
}

func (h *Handler) policyChanged() {
	if h.PolicyChanged != nil {
		h.PolicyChanged()
	}
}

// refuseIfReferenced keeps an AuthConfig that a Client names: deleting it
// would make that client's logins fail (ResolveAuthConfig does not fall back,
// so a required second factor cannot silently lapse).
func (h *Handler) refuseIfReferenced(ctx context.Context, id string) error {
	const pageSize = 500
	for page := 1; ; page++ {
		recs, total, err := h.Store.ListClients(ctx, store.Page{Count: pageSize, Page: page})
		if err != nil {
			return fmt.Errorf("list clients: %w", err)
		}
		for _, rec := range recs {
			c, err := resource.ClientFromStore(rec)
			if err != nil {
				return err
			}
			if c.AuthConfig != nil && c.AuthConfig.ID == id {
				return &conflictError{code: resource.CodeConflict,
					msg: fmt.Sprintf("Client %q uses this AuthConfig; change or delete it first", c.ID)}
			}
		}
		if len(recs) < pageSize || page*pageSize >= total {
			return nil
		}
	}
}

func (h *Handler) userView(ctx context.Context, rec store.User) (view, bool, error) {
	u, err := resource.UserFromStore(rec)
	if err != nil {
		return view{}, false, err
	}
	if u.TwoFactor, err = resource.TwoFactorStatus(ctx, h.Store, rec.ID); err != nil {
		return view{}, false, err
	}
	return view{res: u.Public(), version: rec.Version, updated: rec.UpdatedAt}, false, nil
}

func clientView(rec store.Client) (view, bool, error) {
	c, err := resource.PublicClientFromStore(rec)
	if err != nil {
		return view{}, false, err
	}
	return view{res: c.Public(), version: rec.Version, updated: rec.UpdatedAt}, false, nil
}

func authConfigView(rec store.AuthConfig) (view, bool, error) {
	a, err := resource.AuthConfigFromStore(rec)
	if err != nil {
		return view{}, false, err
	}
	return view{res: a.Public(), version: rec.Version, updated: rec.UpdatedAt}, false, nil
}

// record writes an audit event for an admin change. Details name what
// changed, never a value of a secret.
func (h *Handler) record(ctx context.Context, kind string, who actor, typ, id string, version int64, created bool, extra map[string]string) {
	if h.Audit == nil {
		return
	}
	detail := map[string]string{"resourceType": typ, "id": id, "actor": who.name}
	if kind == audit.AdminWrite {
		detail["action"] = "update"
		if created {
			detail["action"] = "create"
		}
		detail["versionId"] = strconv.FormatInt(version, 10)
	}
	for k, v := range extra {
		detail[k] = v
	}
	e := store.AuditEvent{Type: kind, RemoteAddr: who.remote, RequestID: who.requestID, Detail: detail}
	switch typ {
	case resource.TypeUser:
		e.UserID = id
	case resource.TypeClient:
		e.ClientID = id
	}
	_ = h.Audit.Record(ctx, e) // Record logs its own failure; the write already happened.
}
