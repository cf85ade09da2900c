package conformance

import (
	"bytes"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func testBrowserSessions(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	now := time.Now().In(zone).Truncate(time.Microsecond)
	exp := now.Add(time.Hour)

	t.Run("an anonymous session round-trips", func(t *testing.T) {
		in := store.BrowserSession{ID: "anon", State: []byte(`{"csrf":"x"}`), CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}
		must(t, s.CreateBrowserSession(ctx, in), "create")
		got, err := s.GetBrowserSession(ctx, "anon")
		must(t, err, "get")
		if got.ID != "anon" || got.UserID != "" || !got.AuthTime.IsZero() || len(got.AMR) != 0 || !bytes.Equal(got.State, in.State) {
			t.Errorf("get = %+v, want %+v", got, in)
		}
		sameTime(t, "created", got.CreatedAt, now)
		sameTime(t, "expires", got.ExpiresAt, exp)
	})

	t.Run("a signed-in session keeps its user, auth time and methods", func(t *testing.T) {
		seedUser(t, s, "sess-user")
		in := store.BrowserSession{ID: "authed", UserID: "sess-user", AuthTime: now, AMR: []string{"pwd", "otp"}, State: []byte(`{}`), CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}
		must(t, s.CreateBrowserSession(ctx, in), "create")
		got, err := s.GetBrowserSession(ctx, "authed")
		must(t, err, "get")
		if got.UserID != "sess-user" || !sameStrings(got.AMR, []string{"pwd", "otp"}) {
			t.Errorf("get = %+v, want user and AMR kept", got)
		}
		sameTime(t, "auth time", got.AuthTime, now)
	})

	t.Run("creating a session id twice is a conflict", func(t *testing.T) {
		in := store.BrowserSession{ID: "twice", CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}
		must(t, s.CreateBrowserSession(ctx, in), "first")
		wantErr(t, s.CreateBrowserSession(ctx, in), store.ErrConflict, "second")
	})

	t.Run("an expired session is not found", func(t *testing.T) {
		must(t, s.CreateBrowserSession(ctx, store.BrowserSession{ID: "stale", CreatedAt: now.Add(-2 * time.Hour), UpdatedAt: now.Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Minute)}), "create")
		_, err := s.GetBrowserSession(ctx, "stale")
		wantErr(t, err, store.ErrNotFound, "get")
	})

	t.Run("a missing session is not found for get, update and delete", func(t *testing.T) {
		_, err := s.GetBrowserSession(ctx, "ghost")
		wantErr(t, err, store.ErrNotFound, "get")
		wantErr(t, s.UpdateBrowserSession(ctx, store.BrowserSession{ID: "ghost", ExpiresAt: exp}), store.ErrNotFound, "update")
		wantErr(t, s.DeleteBrowserSession(ctx, "ghost"), store.ErrNotFound, "delete")
	})

	t.Run("an update replaces user, methods, state and expiry", func(t *testing.T) {
		seedUser(t, s, "upd-user")
		must(t, s.CreateBrowserSession(ctx, store.BrowserSession{ID: "upd", State: []byte(`{"step":1}`), CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}), "create")
		newExp := exp.Add(time.Hour)
		must(t, s.UpdateBrowserSession(ctx, store.BrowserSession{ID: "upd", UserID: "upd-user", AuthTime: now, AMR: []string{"pwd"}, State: []byte(`{"step":2}`), CreatedAt: now, UpdatedAt: now, ExpiresAt: newExp}), "update")
		got, err := s.GetBrowserSession(ctx, "upd")
		must(t, err, "get")
		if got.UserID != "upd-user" || !sameStrings(got.AMR, []string{"pwd"}) || string(got.State) != `{"step":2}` {
			t.Errorf("get = %+v, want the update", got)
		}
		sameTime(t, "expiry", got.ExpiresAt, newExp)
		sameTime(t, "created at is kept", got.CreatedAt, now)
		if got.UpdatedAt.Before(now) {
			t.Errorf("updated at %v is before the creation at %v", got.UpdatedAt, now)
		}
	})

	t.Run("replacing a session moves it to a new id and the old id names nothing", func(t *testing.T) {
		seedUser(t, s, "rot-user")
		must(t, s.CreateBrowserSession(ctx, store.BrowserSession{ID: "rot-old", State: []byte(`{"step":1}`), CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}), "create")
		later := now.Add(time.Minute)
		must(t, s.ReplaceBrowserSession(ctx, "rot-old", store.BrowserSession{ID: "rot-new", UserID: "rot-user", AuthTime: later, AMR: []string{"pwd", "mfa"},
			State: []byte(`{"step":2}`), CreatedAt: later, UpdatedAt: later, ExpiresAt: exp.Add(time.Minute)}), "replace")
		_, err := s.GetBrowserSession(ctx, "rot-old")
		wantErr(t, err, store.ErrNotFound, "the old id")
		got, err := s.GetBrowserSession(ctx, "rot-new")
		must(t, err, "the new id")
		if got.UserID != "rot-user" || !sameStrings(got.AMR, []string{"pwd", "mfa"}) || string(got.State) != `{"step":2}` {
			t.Errorf("get = %+v, want the replacement", got)
		}
		sameTime(t, "created at is the replacement's", got.CreatedAt, later)
		sameTime(t, "auth time", got.AuthTime, later)
		sameTime(t, "expiry", got.ExpiresAt, exp.Add(time.Minute))
		wantUTC(t, "replaced session", got.CreatedAt, got.UpdatedAt, got.ExpiresAt, got.AuthTime)

		wantErr(t, s.ReplaceBrowserSession(ctx, "rot-old", store.BrowserSession{ID: "rot-newer", CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}), store.ErrNotFound, "replacing a gone session")
		_, err = s.GetBrowserSession(ctx, "rot-newer")
		wantErr(t, err, store.ErrNotFound, "a failed replacement creates nothing")

		must(t, s.CreateBrowserSession(ctx, store.BrowserSession{ID: "rot-other", CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}), "create another")
		wantErr(t, s.ReplaceBrowserSession(ctx, "rot-new", store.BrowserSession{ID: "rot-other", CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}), store.ErrConflict, "replacing onto a taken id")
		_, err = s.GetBrowserSession(ctx, "rot-new")
		must(t, err, "a conflicting replacement keeps the original")
	})

	t.Run("deleting a session ends it", func(t *testing.T) {
		must(t, s.CreateBrowserSession(ctx, store.BrowserSession{ID: "bye", CreatedAt: now, UpdatedAt: now, ExpiresAt: exp}), "create")
		must(t, s.DeleteBrowserSession(ctx, "bye"), "delete")
		_, err := s.GetBrowserSession(ctx, "bye")
		wantErr(t, err, store.ErrNotFound, "get")
	})

	t.Run("deleting a user's sessions keeps the excepted one and other users' sessions", func(t *testing.T) {
		seedUser(t, s, "many")
		seedUser(t, s, "other")
		for _, bs := range []store.BrowserSession{
			{ID: "many-1", UserID: "many"}, {ID: "many-2", UserID: "many"}, {ID: "many-keep", UserID: "many"}, {ID: "other-1", UserID: "other"},
		} {
			bs.CreatedAt, bs.UpdatedAt, bs.ExpiresAt = now, now, exp
			must(t, s.CreateBrowserSession(ctx, bs), "create "+bs.ID)
		}
		listed, err := s.ListBrowserSessionsByUser(ctx, "many", 10)
		must(t, err, "list")
		if len(listed) != 3 || listed[0].UserID != "many" {
			t.Fatalf("listed %d sessions of many, want 3: %+v", len(listed), listed)
		}
		if two, err := s.ListBrowserSessionsByUser(ctx, "many", 2); err != nil || len(two) != 2 {
			t.Fatalf("list with limit 2: %d, %v", len(two), err)
		}
		must(t, s.DeleteBrowserSessionsByUser(ctx, "many", "many-keep"), "delete all but one")
		for id, alive := range map[string]bool{"many-1": false, "many-2": false, "many-keep": true, "other-1": true} {
			_, err := s.GetBrowserSession(ctx, id)
			if alive {
				must(t, err, id+" should survive")
			} else {
				wantErr(t, err, store.ErrNotFound, id)
			}
		}
		must(t, s.DeleteBrowserSessionsByUser(ctx, "many", ""), "delete all")
		_, err = s.GetBrowserSession(ctx, "many-keep")
		wantErr(t, err, store.ErrNotFound, "the formerly kept session")
	})

	t.Run("purging expired sessions counts what it removed", func(t *testing.T) {
		s := newStore(t)
		cut := time.Now()
		for i, e := range []time.Time{cut.Add(-time.Hour), cut.Add(-time.Minute), cut.Add(time.Hour)} {
			must(t, s.CreateBrowserSession(ctx, store.BrowserSession{ID: string(rune('a' + i)), CreatedAt: now, UpdatedAt: now, ExpiresAt: e}), "create")
		}
		n, err := s.DeleteExpiredBrowserSessions(ctx, cut)
		must(t, err, "purge")
		if n != 2 {
			t.Errorf("purged %d, want 2", n)
		}
		_, err = s.GetBrowserSession(ctx, "c")
		must(t, err, "the live session")
	})
}

func testSigningKeys(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()

	t.Run("an empty store has no keys", func(t *testing.T) {
		keys, err := s.ListSigningKeys(ctx)
		must(t, err, "list")
		if len(keys) != 0 {
			t.Errorf("%d keys, want none", len(keys))
		}
	})

	t.Run("keys list newest first with every field", func(t *testing.T) {
		for i, id := range []string{"k-old", "k-new", "k-mid"} {
			created := map[string]time.Time{"k-old": base, "k-mid": base.Add(time.Hour), "k-new": base.Add(2 * time.Hour)}[id]
			must(t, s.CreateSigningKey(ctx, store.SigningKey{ID: id, Algorithm: "ES256", PrivateKey: []byte{1, 2, byte(i)},
				PublicJWK: []byte(`{"kid":"` + id + `"}`), CreatedAt: created}), "create "+id)
		}
		keys, err := s.ListSigningKeys(ctx)
		must(t, err, "list")
		var ids []string
		for _, k := range keys {
			ids = append(ids, k.ID)
		}
		if !sameStrings(ids, []string{"k-new", "k-mid", "k-old"}) {
			t.Fatalf("order %v, want newest first", ids)
		}
		k := keys[0]
		if k.Algorithm != "ES256" || !bytes.Equal(k.PrivateKey, []byte{1, 2, 1}) || string(k.PublicJWK) != `{"kid":"k-new"}` ||
			!k.RetiredAt.IsZero() || !k.NotAfter.IsZero() {
			t.Errorf("key = %+v", k)
		}
		sameTime(t, "created", k.CreatedAt, base.Add(2*time.Hour))
	})

	t.Run("a duplicate key id is a conflict", func(t *testing.T) {
		wantErr(t, s.CreateSigningKey(ctx, store.SigningKey{ID: "k-old", Algorithm: "ES256", CreatedAt: base}), store.ErrConflict, "create")
	})

	t.Run("retiring a key records when it stopped signing and until when it is published", func(t *testing.T) {
		retired, notAfter := base.Add(3*time.Hour), base.Add(27*time.Hour)
		must(t, s.RetireSigningKey(ctx, "k-mid", retired, notAfter), "retire")
		keys, err := s.ListSigningKeys(ctx)
		must(t, err, "list")
		for _, k := range keys {
			if k.ID == "k-mid" {
				sameTime(t, "retired at", k.RetiredAt, retired)
				sameTime(t, "not after", k.NotAfter, notAfter)
			} else if !k.RetiredAt.IsZero() {
				t.Errorf("key %s retired too", k.ID)
			}
		}
		wantErr(t, s.RetireSigningKey(ctx, "k-none", retired, notAfter), store.ErrNotFound, "retire missing")
	})
}

func testConsents(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	seedUser(t, s, "u1")
	seedUser(t, s, "u2")
	seedClient(t, s, "c1")
	seedClient(t, s, "c2")

	t.Run("a missing consent is not found", func(t *testing.T) {
		_, err := s.GetConsent(ctx, "u1", "c1")
		wantErr(t, err, store.ErrNotFound, "get")
	})

	t.Run("a consent round-trips and a second grant replaces it", func(t *testing.T) {
		must(t, s.PutConsent(ctx, store.Consent{UserID: "u1", ClientID: "c1", Scopes: []string{"openid"}, GrantedAt: base}), "first")
		got, err := s.GetConsent(ctx, "u1", "c1")
		must(t, err, "get")
		if got.UserID != "u1" || got.ClientID != "c1" || !sameStrings(got.Scopes, []string{"openid"}) {
			t.Errorf("get = %+v", got)
		}
		sameTime(t, "granted", got.GrantedAt, base)
		must(t, s.PutConsent(ctx, store.Consent{UserID: "u1", ClientID: "c1", Scopes: []string{"openid", "email"}, GrantedAt: base.Add(time.Hour)}), "second")
		got, err = s.GetConsent(ctx, "u1", "c1")
		must(t, err, "get again")
		if !sameStrings(got.Scopes, []string{"openid", "email"}) {
			t.Errorf("scopes %v after the second grant", got.Scopes)
		}
		sameTime(t, "granted again", got.GrantedAt, base.Add(time.Hour))
	})

	t.Run("deleting a user's consents keeps other users'", func(t *testing.T) {
		for _, c := range []store.Consent{{UserID: "u1", ClientID: "c2"}, {UserID: "u2", ClientID: "c1"}} {
			c.Scopes, c.GrantedAt = []string{"openid"}, base
			must(t, s.PutConsent(ctx, c), "put")
		}
		must(t, s.DeleteConsents(ctx, "u1"), "delete")
		for _, cid := range []string{"c1", "c2"} {
			_, err := s.GetConsent(ctx, "u1", cid)
			wantErr(t, err, store.ErrNotFound, "u1/"+cid)
		}
		_, err := s.GetConsent(ctx, "u2", "c1")
		must(t, err, "u2's consent")
		must(t, s.DeleteConsents(ctx, "u1"), "deleting none is not an error")
	})
}
