package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/twofactor"
)

var errDestinationTaken = &apiError{Status: http.StatusConflict, Code: "destination_taken",
	Desc: "Another account already uses this phone number or e-mail address."}

// maxUserScan bounds the users a phone look-up reads.
const maxUserScan = 1_000_000

// holderOf returns the id of the user who holds a destination, or "". An
// e-mail address belongs to at most one user (the store keeps it unique,
// verified or not); a phone number counts only where it was verified,
// since unverified numbers prove nothing and may be typos.
//
// The store has no index on phone numbers, so a phone look-up pages
// through the users; deployments with very many users would add one.
func (h *Handler) holderOf(ctx context.Context, channel, dest string) (string, error) {
	if channel == twofactor.MethodEmail {
		u, err := h.Store.FindUser(ctx, dest)
		if errors.Is(err, store.ErrNotFound) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("find user by e-mail: %w", err)
		}
		if u.Email != dest { // FindUser matched an id
			return "", nil
		}
		return u.ID, nil
	}
	const page = 500
	for n := 1; (n-1)*page < maxUserScan; n++ {
		us, total, err := h.Store.ListUsers(ctx, store.Page{Count: page, Page: n})
		if err != nil {
			return "", fmt.Errorf("list users: %w", err)
		}
		for _, u := range us {
			if u.PhoneVerified && u.PhoneNumber == dest {
				return u.ID, nil
			}
		}
		if len(us) == 0 || n*page >= total {
			break
		}
	}
	return "", nil
}

// setVerified makes dest the user's phone number or e-mail address, marked
// verified, in the record's columns and its resource document alike. A
// concurrent write to the user is retried; a destination another account
// holds is errDestinationTaken and changes nothing.
func (h *Handler) setVerified(ctx context.Context, userID, channel, dest string) (store.User, error) {
	if owner, err := h.holderOf(ctx, channel, dest); err != nil {
		return store.User{}, err
	} else if owner != "" && owner != userID {
		return store.User{}, errDestinationTaken
	}
	for range 3 {
		rec, err := h.Store.GetUser(ctx, userID)
		if err != nil {
			return store.User{}, fmt.Errorf("get user %q: %w", userID, err)
		}
		u, err := resource.UserFromStore(rec)
		if err != nil {
			return store.User{}, err
		}
		if channel == twofactor.MethodSMS {
			u.PhoneNumber, u.PhoneVerified = dest, true
		} else {
			u.Email, u.EmailVerified = dest, true
		}
		next, err := resource.ToStoreUser(u, "", &rec)
		if err != nil {
			return store.User{}, err
		}
		out, _, err := h.Store.PutUser(ctx, next, rec.Version)
		if errors.Is(err, store.ErrConflict) {
			cur, gerr := h.Store.GetUser(ctx, userID)
			if gerr == nil && cur.Version != rec.Version {
				continue // someone else wrote the user meanwhile: read again
			}
			return store.User{}, errDestinationTaken
		}
		if err != nil {
			return store.User{}, fmt.Errorf("put user %q: %w", userID, err)
		}
		return out, nil
	}
	return store.User{}, fmt.Errorf("put user %q: %w", userID, store.ErrConflict)
}

// userView is the User resource as the API shows it: no password, the
// two-factor status read from the factor record.
func (h *Handler) userView(ctx context.Context, rec store.User) (resource.User, error) {
	u, err := resource.UserFromStore(rec)
	if err != nil {
		return resource.User{}, err
	}
	if u.TwoFactor, err = resource.TwoFactorStatus(ctx, h.Store, rec.ID); err != nil {
		return resource.User{}, err
	}
	return u.Public(), nil
}
