package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/passkey"
	"github.com/gatehouse/gatehouse/internal/store"
)

// Paths of passkey management (a Bearer access token of the user).
const (
	PathPasskeys                  = "/auth/passkeys"
	PathPasskeyRegistrationOption = "/auth/passkeys/registration-options"
	pathPasskey                   = "/auth/passkeys/{id}"
	pathAdminPasskey              = "/User/{id}/$authenticators/passkey/{credential}"
)

var (
	errInvalidPasskey = &apiError{Status: http.StatusBadRequest, Code: "invalid_passkey",
		Desc: "The passkey answer was not accepted: it was malformed, for another or a used or expired challenge, from another origin, or for an unknown passkey. Ask for new options and try again."}
	errNoPasskey   = fail(http.StatusNotFound, "not_found", "The user has no such passkey.")
	errPasskeyName = badRequest(passkey.ErrBadName.Error() + ".")
)

// Passkey is one passkey as the API shows it: nothing secret, nothing that
// signs.
type Passkey struct {
	ID             string     `json:"id"`
	Type           string     `json:"type"`
	Name           string     `json:"name"`
	CreatedAt      time.Time  `json:"createdAt"`
	LastUsedAt     *time.Time `json:"lastUsedAt,omitempty"`
	Transports     []string   `json:"transports,omitempty"`
	BackupEligible bool       `json:"backupEligible"`
	BackupState    bool       `json:"backupState"`
	AAGUID         string     `json:"aaguid,omitempty"`
}

// PasskeyView is how the API shows a stored passkey.
func PasskeyView(c store.WebAuthnCredential) Passkey {
	p := Passkey{ID: c.ID, Type: passkey.StrategyPasskey, Name: c.Name, CreatedAt: c.CreatedAt, Transports: c.Transports,
		BackupEligible: c.BackupEligible, BackupState: c.BackupState}
	if !c.LastUsedAt.IsZero() {
		t := c.LastUsedAt
		p.LastUsedAt = &t
	}
	if len(c.AAGUID) == 16 && !allZero(c.AAGUID) {
		p.AAGUID = formatUUID(c.AAGUID)
	}
	return p
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func formatUUID(b []byte) string {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[x>>4], hex[x&15])
	}
	return string(out)
}

// passkeyBinding binds a registration started with a token to the token's
// family: only that family can finish it.
func passkeyBinding(p *principal) string { return "passkey-api:" + p.token.RequestID }

// passkeyCaller is the bearer of a passkey request: 404 when passkeys are
// off; fresh asks for a sign-in in the last 10 minutes (adding or removing
// a factor).
func (c *call) passkeyCaller(fresh bool) (*principal, error) {
	if c.h.Passkeys == nil {
		return nil, errPasskeysOff
	}
	if fresh {
		return c.freshBearer()
	}
	return c.bearer()
}

var errPasskeysOff = fail(http.StatusNotFound, "not_found", "Passkeys are not enabled on this server.")

// passkeyRegistrationOptions is POST /auth/passkeys/registration-options:
// the creation options for navigator.credentials.create (the user's
// passkeys excluded, a resident key requested).
func (h *Handler) passkeyRegistrationOptions(c *call) error {
	a, err := c.passkeyCaller(true)
	if err != nil {
		return err
	}
	opts, exp, err := h.Passkeys.BeginRegistration(c.r.Context(), a.ac, a.user, passkeyBinding(a))
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, map[string]any{"options": opts, "expires_at": exp})
}

// registerPasskey is POST /auth/passkeys: {credential (the browser's
// PublicKeyCredential as JSON), name?}.
func (h *Handler) registerPasskey(c *call) error {
	a, err := c.passkeyCaller(true)
	if err != nil {
		return err
	}
	vals, err := c.need("credential")
	if err != nil {
		return err
	}
	rec, err := h.Passkeys.FinishRegistration(c.r.Context(), a.ac, a.user, passkeyBinding(a), []byte(vals[0]), c.p.get("name"), metaOf(c.r))
	switch {
	case errors.Is(err, passkey.ErrInvalid):
		return errInvalidPasskey
	case errors.Is(err, passkey.ErrBadName):
		return errPasskeyName
	case err != nil:
		return err
	}
	return c.json(http.StatusCreated, PasskeyView(rec))
}

// listPasskeys is GET /auth/passkeys (with a Bearer token; the hosted
// settings page shares the path and hands such requests here).
func (h *Handler) listPasskeys(c *call) error {
	a, err := c.passkeyCaller(false)
	if err != nil {
		return err
	}
	return h.writePasskeys(c, a.user.ID)
}

func (h *Handler) writePasskeys(c *call, userID string) error {
	recs, err := h.Passkeys.List(c.r.Context(), userID)
	if err != nil {
		return err
	}
	out := []Passkey{}
	for _, r := range recs {
		out = append(out, PasskeyView(r))
	}
	return c.json(http.StatusOK, map[string]any{"passkeys": out})
}

// renamePasskey is PATCH /auth/passkeys/{id}: {name}.
func (h *Handler) renamePasskey(c *call) error {
	a, err := c.passkeyCaller(false)
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	id := c.r.PathValue("id")
	err = h.Passkeys.Rename(ctx, a.user.ID, id, c.p.get("name"), metaOf(c.r))
	switch {
	case errors.Is(err, passkey.ErrBadName):
		return errPasskeyName
	case errors.Is(err, store.ErrNotFound):
		return errNoPasskey
	case err != nil:
		return err
	}
	rec, err := h.Store.GetWebAuthnCredential(ctx, id)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, PasskeyView(rec))
}

// deletePasskey is DELETE /auth/passkeys/{id}: a password (or passkey)
// sign-in within the last 10 minutes, like every change of a factor; the
// user's other sessions and tokens end, this token's family stays.
func (h *Handler) deletePasskey(c *call) error {
	a, err := c.passkeyCaller(true)
	if err != nil {
		return err
	}
	err = h.Passkeys.Delete(c.r.Context(), a.user.ID, c.r.PathValue("id"), "", a.token.RequestID, metaOf(c.r))
	if errors.Is(err, store.ErrNotFound) {
		return errNoPasskey
	}
	if err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// adminDeletePasskey is DELETE /User/{id}/$authenticators/passkey/{credential}:
// the administrator removes one passkey; every session and token of the
// user ends.
func (h *Handler) adminDeletePasskey(c *call) error {
	if h.Passkeys == nil {
		return errPasskeysOff
	}
	u, err := c.adminUser()
	if err != nil {
		return err
	}
	err = h.Passkeys.Delete(c.r.Context(), u.ID, c.r.PathValue("credential"), "", "", metaOf(c.r))
	if errors.Is(err, store.ErrNotFound) {
		return errNoPasskey
	}
	if err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// PasskeyList is the JSON listing of GET /auth/passkeys, for the hosted
// pages to hand Bearer requests to (they serve the same path to browsers).
func (h *Handler) PasskeyList() http.Handler { return h.endpoint(h.listPasskeys) }
