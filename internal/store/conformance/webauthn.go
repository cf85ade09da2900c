package conformance

import (
	"bytes"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func testWebAuthnCredentials(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	now := base
	seedUser(t, s, "pk-alice")
	seedUser(t, s, "pk-bob")
	cred := func(id, user string, count uint32) store.WebAuthnCredential {
		return store.WebAuthnCredential{
			ID: id, UserID: user, PublicKey: []byte("cose-key-" + id), AttestationType: "none", AttestationFmt: "none",
			AAGUID: bytes.Repeat([]byte{7}, 16), SignCount: count, Transports: []string{"internal", "hybrid"}, Attachment: "platform",
			UserPresent: true, UserVerified: true, BackupEligible: true, BackupState: false, Name: "Laptop " + id, CreatedAt: now,
		}
	}

	t.Run("a credential round-trips with every field and nothing else", func(t *testing.T) {
		in := cred("cred-1", "pk-alice", 3)
		must(t, s.CreateWebAuthnCredential(ctx, in), "create")
		got, err := s.GetWebAuthnCredential(ctx, "cred-1")
		must(t, err, "get")
		if got.UserID != "pk-alice" || !bytes.Equal(got.PublicKey, in.PublicKey) || got.AttestationType != "none" || got.AttestationFmt != "none" ||
			!bytes.Equal(got.AAGUID, in.AAGUID) || got.SignCount != 3 || !sameStrings(got.Transports, in.Transports) || got.Attachment != "platform" ||
			!got.UserPresent || !got.UserVerified || !got.BackupEligible || got.BackupState || got.Name != "Laptop cred-1" || !got.LastUsedAt.IsZero() {
			t.Errorf("get = %+v", got)
		}
		sameTime(t, "created", got.CreatedAt, now)
	})

	t.Run("a credential id is unique over all users and needs an existing user", func(t *testing.T) {
		wantErr(t, s.CreateWebAuthnCredential(ctx, cred("cred-1", "pk-bob", 0)), store.ErrConflict, "duplicate id")
		wantErr(t, s.CreateWebAuthnCredential(ctx, cred("cred-ghost", "nobody", 0)), store.ErrNotFound, "unknown user")
	})

	t.Run("a listing holds only the user's own credentials, oldest first", func(t *testing.T) {
		c2 := cred("cred-2", "pk-alice", 0)
		c2.CreatedAt = now.Add(time.Minute)
		must(t, s.CreateWebAuthnCredential(ctx, c2), "create second")
		must(t, s.CreateWebAuthnCredential(ctx, cred("cred-b", "pk-bob", 0)), "create bob's")
		list, err := s.ListWebAuthnCredentials(ctx, "pk-alice")
		must(t, err, "list")
		if len(list) != 2 || list[0].ID != "cred-1" || list[1].ID != "cred-2" {
			t.Errorf("list = %+v", list)
		}
		none, err := s.ListWebAuthnCredentials(ctx, "nobody")
		must(t, err, "list nobody")
		if len(none) != 0 {
			t.Errorf("list of nobody = %+v", none)
		}
	})

	t.Run("rename and delete reach only the owner's credential", func(t *testing.T) {
		wantErr(t, s.RenameWebAuthnCredential(ctx, "pk-bob", "cred-2", "stolen"), store.ErrNotFound, "rename other's")
		must(t, s.RenameWebAuthnCredential(ctx, "pk-alice", "cred-2", "Phone"), "rename")
		got, err := s.GetWebAuthnCredential(ctx, "cred-2")
		must(t, err, "get renamed")
		if got.Name != "Phone" {
			t.Errorf("name = %q", got.Name)
		}
		wantErr(t, s.DeleteWebAuthnCredential(ctx, "pk-bob", "cred-2"), store.ErrNotFound, "delete other's")
		must(t, s.DeleteWebAuthnCredential(ctx, "pk-alice", "cred-2"), "delete")
		_, err = s.GetWebAuthnCredential(ctx, "cred-2")
		wantErr(t, err, store.ErrNotFound, "get deleted")
		wantErr(t, s.DeleteWebAuthnCredential(ctx, "pk-alice", "cred-2"), store.ErrNotFound, "delete again")
	})

	t.Run("a use moves the counter forward and a counter that stands still or goes back is refused", func(t *testing.T) {
		later := now.Add(time.Hour)
		must(t, s.UseWebAuthnCredential(ctx, "pk-alice", "cred-1", 4, true, true, later), "advance")
		got, err := s.GetWebAuthnCredential(ctx, "cred-1")
		must(t, err, "get")
		if got.SignCount != 4 || !got.BackupState {
			t.Errorf("after use = %+v", got)
		}
		sameTime(t, "last used", got.LastUsedAt, later)
		wantErr(t, s.UseWebAuthnCredential(ctx, "pk-alice", "cred-1", 4, true, true, later), store.ErrConflict, "same counter")
		wantErr(t, s.UseWebAuthnCredential(ctx, "pk-alice", "cred-1", 2, true, true, later), store.ErrConflict, "counter back")
		wantErr(t, s.UseWebAuthnCredential(ctx, "pk-bob", "cred-1", 9, true, true, later), store.ErrNotFound, "other user's credential")
		got, _ = s.GetWebAuthnCredential(ctx, "cred-1")
		if got.SignCount != 4 {
			t.Errorf("a refused use changed the counter to %d", got.SignCount)
		}
	})

	t.Run("an authenticator without a counter stays at zero and a counter that appears is then required", func(t *testing.T) {
		must(t, s.CreateWebAuthnCredential(ctx, cred("cred-zero", "pk-bob", 0)), "create")
		must(t, s.UseWebAuthnCredential(ctx, "pk-bob", "cred-zero", 0, false, true, now), "zero")
		must(t, s.UseWebAuthnCredential(ctx, "pk-bob", "cred-zero", 0, false, true, now), "zero again")
		must(t, s.UseWebAuthnCredential(ctx, "pk-bob", "cred-zero", 1, false, true, now), "first count")
		wantErr(t, s.UseWebAuthnCredential(ctx, "pk-bob", "cred-zero", 0, false, true, now), store.ErrConflict, "back to zero")
	})

	t.Run("of many uses with the same counter exactly one wins", func(t *testing.T) {
		must(t, s.CreateWebAuthnCredential(ctx, cred("cred-race", "pk-bob", 10)), "create")
		errs := race(8, func(int) error { return s.UseWebAuthnCredential(ctx, "pk-bob", "cred-race", 11, false, true, now) })
		if wins, losses := tally(t, errs, store.ErrConflict); wins != 1 || losses != 7 {
			t.Errorf("wins %d, losses %d; want 1 and 7", wins, losses)
		}
	})

	t.Run("deleting the user deletes the credentials", func(t *testing.T) {
		seedUser(t, s, "pk-gone")
		must(t, s.CreateWebAuthnCredential(ctx, cred("cred-gone", "pk-gone", 0)), "create")
		must(t, s.DeleteUser(ctx, "pk-gone"), "delete user")
		_, err := s.GetWebAuthnCredential(ctx, "cred-gone")
		wantErr(t, err, store.ErrNotFound, "get")
	})
}

func testWebAuthnChallenges(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	now := base
	ch := func(c, binding, purpose string) store.WebAuthnChallenge {
		return store.WebAuthnChallenge{Challenge: c, UserID: "u1", BindingID: binding, Purpose: purpose, Session: []byte(`{"challenge":"` + c + `"}`),
			CreatedAt: now, ExpiresAt: now.Add(5 * time.Minute)}
	}

	t.Run("a challenge is consumed once with its binding and purpose", func(t *testing.T) {
		must(t, s.CreateWebAuthnChallenge(ctx, ch("c1", "ticket-1", "login")), "create")
		wantErr(t, s.CreateWebAuthnChallenge(ctx, ch("c1", "ticket-1", "login")), store.ErrConflict, "duplicate")
		_, err := s.ConsumeWebAuthnChallenge(ctx, "c1", "ticket-2", "login", now)
		wantErr(t, err, store.ErrNotFound, "other binding")
		_, err = s.ConsumeWebAuthnChallenge(ctx, "c1", "ticket-1", "register", now)
		wantErr(t, err, store.ErrNotFound, "other purpose")
		got, err := s.ConsumeWebAuthnChallenge(ctx, "c1", "ticket-1", "login", now.Add(time.Minute))
		must(t, err, "consume")
		if got.UserID != "u1" || got.BindingID != "ticket-1" || string(got.Session) != `{"challenge":"c1"}` {
			t.Errorf("consumed = %+v", got)
		}
		sameTime(t, "expires", got.ExpiresAt, now.Add(5*time.Minute))
		_, err = s.ConsumeWebAuthnChallenge(ctx, "c1", "ticket-1", "login", now.Add(time.Minute))
		wantErr(t, err, store.ErrNotFound, "replay")
	})

	t.Run("an expired challenge is refused and purged", func(t *testing.T) {
		must(t, s.CreateWebAuthnChallenge(ctx, ch("c-old", "b", "login")), "create")
		_, err := s.ConsumeWebAuthnChallenge(ctx, "c-old", "b", "login", now.Add(5*time.Minute))
		wantErr(t, err, store.ErrNotFound, "at expiry")
		n, err := s.DeleteExpiredWebAuthnChallenges(ctx, now.Add(6*time.Minute))
		must(t, err, "purge")
		if n != 1 {
			t.Errorf("purged %d, want 1", n)
		}
	})

	t.Run("of many consumers of one challenge exactly one gets it", func(t *testing.T) {
		must(t, s.CreateWebAuthnChallenge(ctx, ch("c-race", "b", "login")), "create")
		errs := race(8, func(int) error {
			_, err := s.ConsumeWebAuthnChallenge(ctx, "c-race", "b", "login", now)
			return err
		})
		if wins, losses := tally(t, errs, store.ErrNotFound); wins != 1 || losses != 7 {
			t.Errorf("wins %d, losses %d; want 1 and 7", wins, losses)
		}
	})
}
