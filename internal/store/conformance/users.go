package conformance

import (
	"bytes"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func testUsers(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()

	t.Run("every field of a user round-trips", func(t *testing.T) {
		in := store.User{
			ID: "full-1", Email: "full@example.org", PhoneNumber: "+15551234567",
			EmailVerified: true, PhoneVerified: true, PasswordHash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA",
			Inactive: true, Doc: []byte(`{"resourceType":"User","id":"full-1"}`),
		}
		put, _, err := s.PutUser(ctx, in, 0)
		must(t, err, "put")
		got, err := s.GetUser(ctx, "full-1")
		must(t, err, "get")
		if got.Email != in.Email || got.PhoneNumber != in.PhoneNumber || !got.EmailVerified || !got.PhoneVerified ||
			got.PasswordHash != in.PasswordHash || !got.Inactive || !bytes.Equal(got.Doc, in.Doc) || got.Version != 1 {
			t.Errorf("get = %+v, want %+v", got, in)
		}
		sameTime(t, "created at", got.CreatedAt, put.CreatedAt)
	})

	t.Run("flags and optional fields can be cleared again", func(t *testing.T) {
		_, _, err := s.PutUser(ctx, store.User{ID: "clear-1", Email: "clear@example.org", PhoneNumber: "+1555", EmailVerified: true, Inactive: true, PasswordHash: "h"}, 0)
		must(t, err, "put")
		_, _, err = s.PutUser(ctx, store.User{ID: "clear-1"}, 1)
		must(t, err, "clear")
		got, err := s.GetUser(ctx, "clear-1")
		must(t, err, "get")
		if got.Email != "" || got.PhoneNumber != "" || got.EmailVerified || got.Inactive || got.PasswordHash != "" {
			t.Errorf("get = %+v, want every optional field empty", got)
		}
	})

	t.Run("a duplicate e-mail is a conflict whatever its case", func(t *testing.T) {
		_, _, err := s.PutUser(ctx, store.User{ID: "dup-1", Email: "dup@example.org"}, 0)
		must(t, err, "first user")
		for _, email := range []string{"dup@example.org", "DUP@Example.ORG"} {
			_, _, err = s.PutUser(ctx, store.User{ID: "dup-2", Email: email}, 0)
			wantErr(t, err, store.ErrConflict, "second user with "+email)
		}
		_, err = s.GetUser(ctx, "dup-2")
		wantErr(t, err, store.ErrNotFound, "the refused user")
	})

	t.Run("changing a user's e-mail to a taken one is a conflict", func(t *testing.T) {
		_, _, err := s.PutUser(ctx, store.User{ID: "move-1", Email: "taken@example.org"}, 0)
		must(t, err, "first")
		_, _, err = s.PutUser(ctx, store.User{ID: "move-2", Email: "free@example.org"}, 0)
		must(t, err, "second")
		_, _, err = s.PutUser(ctx, store.User{ID: "move-2", Email: "taken@example.org"}, 1)
		wantErr(t, err, store.ErrConflict, "take the e-mail with a version")
		_, _, err = s.PutUser(ctx, store.User{ID: "move-2", Email: "taken@example.org"}, 0)
		wantErr(t, err, store.ErrConflict, "take the e-mail without a version")
		got, err := s.GetUser(ctx, "move-2")
		must(t, err, "get")
		if got.Email != "free@example.org" || got.Version != 1 {
			t.Errorf("after refused changes the user is %q at version %d, want unchanged", got.Email, got.Version)
		}
	})

	t.Run("many users without an e-mail do not collide", func(t *testing.T) {
		for _, id := range []string{"noemail-1", "noemail-2", "noemail-3"} {
			_, _, err := s.PutUser(ctx, store.User{ID: id}, 0)
			must(t, err, "put "+id)
		}
	})

	t.Run("find user matches the id first, then the e-mail in any case", func(t *testing.T) {
		_, _, err := s.PutUser(ctx, store.User{ID: "find-1", Email: "ann@example.org"}, 0)
		must(t, err, "ann")
		// A user whose id looks like another user's e-mail.
		_, _, err = s.PutUser(ctx, store.User{ID: "ann@example.org", Email: "other@example.org"}, 0)
		must(t, err, "id-like-email")
		cases := []struct {
			login, want string
		}{
			{"find-1", "find-1"},
			{"ann@example.org", "ann@example.org"},
			{"ANN@Example.org", "find-1"},
			{"other@example.org", "ann@example.org"},
		}
		for _, c := range cases {
			got, err := s.FindUser(ctx, c.login)
			must(t, err, "find "+c.login)
			if got.ID != c.want {
				t.Errorf("find %q = %q, want %q", c.login, got.ID, c.want)
			}
		}
		for _, login := range []string{"", "nobody", "nobody@example.org"} {
			_, err := s.FindUser(ctx, login)
			wantErr(t, err, store.ErrNotFound, "find "+login)
		}
	})

	t.Run("a user read with its factors is the user, with its built-in factor and its count of passkeys", func(t *testing.T) {
		_, _, err := s.PutUser(ctx, store.User{ID: "wf-plain", Email: "wf-plain@example.org", PasswordHash: "h1"}, 0)
		must(t, err, "plain user")
		_, _, err = s.PutUser(ctx, store.User{ID: "wf-both", Email: "wf-both@example.org", PasswordHash: "h2"}, 0)
		must(t, err, "user with factors")
		tf := store.TwoFactor{UserID: "wf-both", Method: "totp", Enabled: true, Secret: []byte("sealed"), LastStep: 42,
			EnrolledAt: base, Failures: 2, LockedUntil: base.Add(time.Minute), Lockouts: 1}
		must(t, s.PutTwoFactor(ctx, tf), "factor")
		for _, id := range []string{"wf-key-1", "wf-key-2"} {
			must(t, s.CreateWebAuthnCredential(ctx, store.WebAuthnCredential{ID: id, UserID: "wf-both", PublicKey: []byte(id), CreatedAt: base}), "passkey "+id)
		}
		stored, err := s.GetTwoFactor(ctx, "wf-both")
		must(t, err, "get factor")

		reads := []struct {
			name string
			read func(login string) (store.User, error)
		}{
			{"get", func(id string) (store.User, error) { return s.GetUserWithFactors(ctx, id) }},
			{"find", func(login string) (store.User, error) { return s.FindUserWithFactors(ctx, login) }},
		}
		for _, r := range reads {
			plain, err := r.read("wf-plain")
			must(t, err, r.name+" plain")
			want, err := s.GetUser(ctx, "wf-plain")
			must(t, err, "get plain")
			if plain.ID != want.ID || plain.Email != want.Email || plain.PasswordHash != want.PasswordHash || plain.Version != want.Version {
				t.Errorf("%s plain = %+v, want %+v", r.name, plain, want)
			}
			if f := plain.Factors; f == nil || f.TwoFactor.UserID != "wf-plain" || f.TwoFactor.Enabled || f.TwoFactor.Method != "" || f.Passkeys != 0 {
				t.Errorf("%s plain: factors = %+v, want no factor and no passkeys", r.name, f)
			}

			both, err := r.read("wf-both")
			must(t, err, r.name+" with factors")
			f := both.Factors
			if f == nil {
				t.Fatalf("%s with factors: no factors read", r.name)
			}
			got := f.TwoFactor
			if got.UserID != "wf-both" || got.Method != "totp" || !got.Enabled || !bytes.Equal(got.Secret, stored.Secret) ||
				got.LastStep != 42 || got.Failures != 2 || got.Lockouts != 1 {
				t.Errorf("%s with factors: factor = %+v, want %+v", r.name, got, stored)
			}
			sameTime(t, r.name+" enrolled at", got.EnrolledAt, stored.EnrolledAt)
			sameTime(t, r.name+" locked until", got.LockedUntil, stored.LockedUntil)
			sameTime(t, r.name+" updated at", got.UpdatedAt, stored.UpdatedAt)
			if f.Passkeys != 2 {
				t.Errorf("%s with factors: %d passkeys, want 2", r.name, f.Passkeys)
			}
			_, err = r.read("wf-nobody")
			wantErr(t, err, store.ErrNotFound, r.name+" unknown")
		}
		if u, err := s.FindUserWithFactors(ctx, "WF-Both@Example.org"); err != nil || u.ID != "wf-both" {
			t.Errorf("find by e-mail = %q, %v; want wf-both", u.ID, err)
		}
		if u, err := s.GetUser(ctx, "wf-both"); err != nil || u.Factors != nil {
			t.Errorf("a plain read has factors %+v (%v)", u.Factors, err)
		}
	})

	t.Run("find user by phone finds the one verified holder of the exact number", func(t *testing.T) {
		s := newStore(t)
		for _, u := range []store.User{
			{ID: "ph-verified", PhoneNumber: "+15550100", PhoneVerified: true},
			{ID: "ph-a-typed", PhoneNumber: "+15550100"}, // sorts first by id
			{ID: "ph-typed-only", PhoneNumber: "+15550200"},
			{ID: "ph-shared-1", PhoneNumber: "+15550300", PhoneVerified: true},
			{ID: "ph-shared-2", PhoneNumber: "+15550300", PhoneVerified: true},
			{ID: "ph-none", PhoneVerified: true}, // a flag without a number
		} {
			_, _, err := s.PutUser(ctx, u, 0)
			must(t, err, "put "+u.ID)
		}
		cases := []struct {
			name, phone string
			want        string // user id, when wantErr is nil
			wantErr     error
		}{
			{"a number one user verified and another only typed finds the verified holder", "+15550100", "ph-verified", nil},
			{"a number users only typed finds nobody", "+15550200", "", store.ErrNotFound},
			{"a number several users verified is ambiguous", "+15550300", "", store.ErrConflict},
			{"an unknown number finds nobody", "+15550999", "", store.ErrNotFound},
			{"a number is not a prefix match", "+1555010", "", store.ErrNotFound},
			{"a number without its plus is another number", "15550100", "", store.ErrNotFound},
			{"an empty number finds nobody, not the users without one", "", "", store.ErrNotFound},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got, err := s.FindUserByPhone(ctx, c.phone)
				if c.wantErr != nil {
					wantErr(t, err, c.wantErr, "find "+c.phone)
					return
				}
				must(t, err, "find "+c.phone)
				if got.ID != c.want || !got.PhoneVerified || got.PhoneNumber != c.phone || got.Version != 1 {
					t.Errorf("found %+v, want the whole record of %q", got, c.want)
				}
				wantUTC(t, "found user", got.CreatedAt, got.UpdatedAt)
			})
		}
	})

	t.Run("find user by phone follows changes of number and verification", func(t *testing.T) {
		s := newStore(t)
		_, _, err := s.PutUser(ctx, store.User{ID: "mover", PhoneNumber: "+15550400", PhoneVerified: true}, 0)
		must(t, err, "mover")
		_, _, err = s.PutUser(ctx, store.User{ID: "sharer", PhoneNumber: "+15550400", PhoneVerified: true}, 0)
		must(t, err, "a second verified holder is stored")
		_, err = s.FindUserByPhone(ctx, "+15550400")
		wantErr(t, err, store.ErrConflict, "two verified holders")

		_, _, err = s.PutUser(ctx, store.User{ID: "sharer", PhoneNumber: "+15550400"}, 1)
		must(t, err, "sharer unverifies")
		got, err := s.FindUserByPhone(ctx, "+15550400")
		must(t, err, "find after the unverification")
		if got.ID != "mover" {
			t.Errorf("found %q, want mover", got.ID)
		}

		_, _, err = s.PutUser(ctx, store.User{ID: "mover", PhoneNumber: "+15550401", PhoneVerified: true}, 1)
		must(t, err, "mover changes number")
		_, err = s.FindUserByPhone(ctx, "+15550400")
		wantErr(t, err, store.ErrNotFound, "the old number")
		got, err = s.FindUserByPhone(ctx, "+15550401")
		must(t, err, "the new number")
		if got.ID != "mover" || got.Version != 2 {
			t.Errorf("found %+v, want mover at version 2", got)
		}

		must(t, s.DeleteUser(ctx, "mover"), "delete")
		_, err = s.FindUserByPhone(ctx, "+15550401")
		wantErr(t, err, store.ErrNotFound, "the deleted user's number")
	})

	t.Run("deleting a user removes its sessions, factor, codes and consents but not others'", func(t *testing.T) {
		seedUser(t, s, "gone")
		seedUser(t, s, "stays")
		seedClient(t, s, "del-client")
		exp := time.Now().Add(time.Hour)
		for _, bs := range []store.BrowserSession{
			{ID: "gone-sess", UserID: "gone", ExpiresAt: exp},
			{ID: "stays-sess", UserID: "stays", ExpiresAt: exp},
		} {
			must(t, s.CreateBrowserSession(ctx, bs), "session")
		}
		for _, uid := range []string{"gone", "stays"} {
			must(t, s.PutTwoFactor(ctx, store.TwoFactor{UserID: uid, Method: "totp", Enabled: true, Secret: []byte("sealed")}), "factor")
			must(t, s.ReplaceRecoveryCodes(ctx, uid, []string{"r1", "r2"}), "recovery")
			must(t, s.CreateOneTimeCode(ctx, store.OneTimeCode{ID: uid + "-otc", UserID: uid, Purpose: "login", Channel: "sms",
				BindingID: uid + "-bind", CodeHash: "c", CreatedAt: time.Now(), ExpiresAt: exp}), "code")
			must(t, s.PutConsent(ctx, store.Consent{UserID: uid, ClientID: "del-client", Scopes: []string{"openid"}, GrantedAt: time.Now()}), "consent")
		}

		must(t, s.DeleteUser(ctx, "gone"), "delete")

		_, err := s.GetUser(ctx, "gone")
		wantErr(t, err, store.ErrNotFound, "user")
		_, err = s.GetBrowserSession(ctx, "gone-sess")
		wantErr(t, err, store.ErrNotFound, "session")
		_, err = s.GetTwoFactor(ctx, "gone")
		wantErr(t, err, store.ErrNotFound, "factor")
		n, err := s.CountRecoveryCodes(ctx, "gone")
		must(t, err, "count recovery")
		if n != 0 {
			t.Errorf("%d recovery codes left, want 0", n)
		}
		_, err = s.ConsumeOneTimeCode(ctx, "gone-bind", "c", time.Now())
		wantErr(t, err, store.ErrNotFound, "one-time code")
		_, err = s.GetConsent(ctx, "gone", "del-client")
		wantErr(t, err, store.ErrNotFound, "consent")

		_, err = s.GetBrowserSession(ctx, "stays-sess")
		must(t, err, "other user's session")
		_, err = s.GetTwoFactor(ctx, "stays")
		must(t, err, "other user's factor")
		n, err = s.CountRecoveryCodes(ctx, "stays")
		must(t, err, "count other user's codes")
		if n != 2 {
			t.Errorf("other user has %d recovery codes, want 2", n)
		}
		_, err = s.GetConsent(ctx, "stays", "del-client")
		must(t, err, "other user's consent")
		_, err = s.ConsumeOneTimeCode(ctx, "stays-bind", "c", time.Now())
		must(t, err, "other user's one-time code")

		wantErr(t, s.DeleteUser(ctx, "gone"), store.ErrNotFound, "delete again")
	})
}

func testClients(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()

	t.Run("a client keeps its secret hash, and a public client has none", func(t *testing.T) {
		_, _, err := s.PutClient(ctx, store.Client{ID: "conf", SecretHash: "mac:abc", Doc: []byte(`{"id":"conf"}`)}, 0)
		must(t, err, "confidential")
		_, _, err = s.PutClient(ctx, store.Client{ID: "pub", Doc: []byte(`{"id":"pub"}`)}, 0)
		must(t, err, "public")
		c, err := s.GetClient(ctx, "conf")
		must(t, err, "get confidential")
		p, err := s.GetClient(ctx, "pub")
		must(t, err, "get public")
		if c.SecretHash != "mac:abc" || p.SecretHash != "" || string(c.Doc) != `{"id":"conf"}` {
			t.Errorf("got %+v and %+v", c, p)
		}
	})

	t.Run("deleting a client removes the consents given to it", func(t *testing.T) {
		seedUser(t, s, "consenter")
		seedClient(t, s, "doomed")
		seedClient(t, s, "kept")
		for _, cid := range []string{"doomed", "kept"} {
			must(t, s.PutConsent(ctx, store.Consent{UserID: "consenter", ClientID: cid, Scopes: []string{"openid"}}), "consent "+cid)
		}
		must(t, s.DeleteClient(ctx, "doomed"), "delete")
		_, err := s.GetConsent(ctx, "consenter", "doomed")
		wantErr(t, err, store.ErrNotFound, "consent to the deleted client")
		_, err = s.GetConsent(ctx, "consenter", "kept")
		must(t, err, "consent to the other client")
	})

	t.Run("deleting a client removes every token, code and pushed request issued to it, also for a client re-created with its id", func(t *testing.T) {
		seedClient(t, s, "gone")
		seedClient(t, s, "stays")
		recs := []store.OAuthRequest{
			oauthRequest(store.KindAccessToken, "sig-gone-at", "req-gone", "u1", base.Add(time.Hour)),
			oauthRequest(store.KindRefreshToken, "sig-gone-rt", "req-gone", "u1", base.Add(time.Hour)),
			oauthRequest(store.KindAuthorizeCode, "sig-gone-code", "req-gone-2", "u1", base.Add(time.Hour)),
			oauthRequest(store.KindPushed, "sig-gone-par", "req-gone-3", "", base.Add(time.Minute)),
			oauthRequest(store.KindAccessToken, "sig-stays-at", "req-stays", "u1", base.Add(time.Hour)),
		}
		for i := range recs {
			recs[i].ClientID = "gone"
		}
		recs[4].ClientID = "stays"
		for _, r := range recs {
			must(t, s.CreateOAuthRequest(ctx, r), "create "+r.Signature)
		}
		must(t, s.DeleteClient(ctx, "gone"), "delete")
		seedClient(t, s, "gone")
		for _, r := range recs[:4] {
			_, err := s.GetOAuthRequest(ctx, r.Kind, r.Signature)
			wantErr(t, err, store.ErrNotFound, r.Signature+" of the deleted client")
		}
		_, err := s.GetOAuthRequest(ctx, store.KindAccessToken, "sig-stays-at")
		must(t, err, "the other client's token")
	})
}
