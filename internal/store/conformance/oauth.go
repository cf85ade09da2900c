package conformance

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
)

func oauthRequest(kind store.OAuthKind, sig, requestID, subject string, expires time.Time) store.OAuthRequest {
	return store.OAuthRequest{
		Kind: kind, Signature: sig, RequestID: requestID, ClientID: "app", Subject: subject,
		RequestedAt: base, ExpiresAt: expires, Active: true,
		Scopes: []string{"openid", "offline"}, GrantedScopes: []string{"openid"},
		Audience: []string{"https://api.example.org"}, GrantedAudience: []string{"https://api.example.org"},
		Form:    "redirect_uri=https%3A%2F%2Fapp.example.org%2Fcb&scope=openid+offline",
		Session: []byte(`{"subject":"` + subject + `"}`),
	}
}

func testOAuthRequests(t *testing.T, newStore func(t testing.TB) store.Store) {
	s := newStore(t)
	ctx := ctxb()
	later := base.Add(time.Hour)

	t.Run("a request round-trips with every field and UTC times", func(t *testing.T) {
		in := oauthRequest(store.KindAuthorizeCode, "sig-rt", "req-rt", "alice", later)
		must(t, s.CreateOAuthRequest(ctx, in), "create")
		got, err := s.GetOAuthRequest(ctx, store.KindAuthorizeCode, "sig-rt")
		must(t, err, "get")
		if got.Kind != in.Kind || got.Signature != in.Signature || got.RequestID != in.RequestID || got.ClientID != in.ClientID ||
			got.Subject != in.Subject || !got.Active || got.Form != in.Form || !bytes.Equal(got.Session, in.Session) ||
			!sameStrings(got.Scopes, in.Scopes) || !sameStrings(got.GrantedScopes, in.GrantedScopes) ||
			!sameStrings(got.Audience, in.Audience) || !sameStrings(got.GrantedAudience, in.GrantedAudience) {
			t.Errorf("get = %+v\nwant %+v", got, in)
		}
		sameTime(t, "requested at", got.RequestedAt, in.RequestedAt)
		sameTime(t, "expires at", got.ExpiresAt, in.ExpiresAt)
	})

	t.Run("empty lists come back empty", func(t *testing.T) {
		in := store.OAuthRequest{Kind: store.KindAccessToken, Signature: "sig-empty", RequestID: "req-empty", RequestedAt: base, ExpiresAt: later, Active: true}
		must(t, s.CreateOAuthRequest(ctx, in), "create")
		got, err := s.GetOAuthRequest(ctx, store.KindAccessToken, "sig-empty")
		must(t, err, "get")
		if len(got.Scopes)+len(got.GrantedScopes)+len(got.Audience)+len(got.GrantedAudience) != 0 || got.Subject != "" || len(got.Session) != 0 {
			t.Errorf("get = %+v, want empty lists, subject and session", got)
		}
	})

	t.Run("storing a signature twice is a conflict", func(t *testing.T) {
		in := oauthRequest(store.KindRefreshToken, "sig-dup", "req-dup", "alice", later)
		must(t, s.CreateOAuthRequest(ctx, in), "first")
		wantErr(t, s.CreateOAuthRequest(ctx, in), store.ErrConflict, "second")
	})

	t.Run("one signature under two kinds is two records", func(t *testing.T) {
		must(t, s.CreateOAuthRequest(ctx, oauthRequest(store.KindPKCE, "sig-shared", "req-a", "alice", later)), "pkce")
		must(t, s.CreateOAuthRequest(ctx, oauthRequest(store.KindOIDC, "sig-shared", "req-b", "alice", later)), "oidc")
		must(t, s.DeleteOAuthRequest(ctx, store.KindPKCE, "sig-shared"), "delete pkce")
		got, err := s.GetOAuthRequest(ctx, store.KindOIDC, "sig-shared")
		must(t, err, "get oidc")
		if got.RequestID != "req-b" {
			t.Errorf("oidc record has request id %q, want req-b", got.RequestID)
		}
	})

	t.Run("several records are created together, or none of them", func(t *testing.T) {
		code := oauthRequest(store.KindAuthorizeCode, "sig-batch", "req-batch", "alice", later)
		pkce := oauthRequest(store.KindPKCE, "sig-batch", "req-batch", "alice", later)
		oidc := oauthRequest(store.KindOIDC, "sig-batch", "req-batch", "alice", later)
		must(t, s.CreateOAuthRequests(ctx, []store.OAuthRequest{code, pkce, oidc}), "create three")
		for _, k := range []store.OAuthKind{store.KindAuthorizeCode, store.KindPKCE, store.KindOIDC} {
			got, err := s.GetOAuthRequest(ctx, k, "sig-batch")
			must(t, err, "get "+string(k))
			if got.RequestID != "req-batch" || !sameStrings(got.Scopes, code.Scopes) || !bytes.Equal(got.Session, code.Session) {
				t.Errorf("%s record = %+v", k, got)
			}
		}
		fresh := oauthRequest(store.KindAccessToken, "sig-batch-new", "req-batch", "alice", later)
		wantErr(t, s.CreateOAuthRequests(ctx, []store.OAuthRequest{fresh, code}), store.ErrConflict, "a batch with a taken signature")
		_, err := s.GetOAuthRequest(ctx, store.KindAccessToken, "sig-batch-new")
		wantErr(t, err, store.ErrNotFound, "the rest of a refused batch")
		must(t, s.CreateOAuthRequests(ctx, nil), "an empty batch")
	})

	t.Run("the records under one signature are read and deleted by kind in one call", func(t *testing.T) {
		must(t, s.CreateOAuthRequests(ctx, []store.OAuthRequest{
			oauthRequest(store.KindAuthorizeCode, "sig-kinds", "req-kinds", "alice", later),
			oauthRequest(store.KindOIDC, "sig-kinds", "req-kinds", "alice", later),
			oauthRequest(store.KindAccessToken, "sig-kinds", "req-other", "alice", later),
		}), "create")
		got, err := s.GetOAuthRequests(ctx, "sig-kinds", []store.OAuthKind{store.KindAuthorizeCode, store.KindPKCE, store.KindOIDC})
		must(t, err, "get")
		kinds := map[store.OAuthKind]string{}
		for _, r := range got {
			kinds[r.Kind] = r.RequestID
			wantUTC(t, "read "+string(r.Kind), r.RequestedAt, r.ExpiresAt)
		}
		if len(got) != 2 || kinds[store.KindAuthorizeCode] != "req-kinds" || kinds[store.KindOIDC] != "req-kinds" {
			t.Errorf("got %d records %v, want the code and the oidc record only", len(got), kinds)
		}
		n, err := s.DeleteOAuthRequests(ctx, "sig-kinds", []store.OAuthKind{store.KindPKCE, store.KindOIDC})
		must(t, err, "delete")
		if n != 1 {
			t.Errorf("deleted %d, want 1", n)
		}
		got, err = s.GetOAuthRequests(ctx, "sig-kinds", []store.OAuthKind{store.KindAuthorizeCode, store.KindOIDC, store.KindAccessToken})
		must(t, err, "get after delete")
		if len(got) != 2 {
			t.Errorf("after deleting the oidc record %d records remain, want the code and the access token", len(got))
		}
		got, err = s.GetOAuthRequests(ctx, "sig-none", []store.OAuthKind{store.KindAuthorizeCode})
		must(t, err, "get nothing")
		if len(got) != 0 {
			t.Errorf("an unknown signature gave %d records", len(got))
		}
	})

	t.Run("a missing request is not found for get, delete and deactivate", func(t *testing.T) {
		_, err := s.GetOAuthRequest(ctx, store.KindAccessToken, "nope")
		wantErr(t, err, store.ErrNotFound, "get")
		wantErr(t, s.DeleteOAuthRequest(ctx, store.KindAccessToken, "nope"), store.ErrNotFound, "delete")
		wantErr(t, s.DeactivateOAuthRequest(ctx, store.KindAccessToken, "nope"), store.ErrNotFound, "deactivate")
	})

	t.Run("a request deactivates once and then conflicts", func(t *testing.T) {
		must(t, s.CreateOAuthRequest(ctx, oauthRequest(store.KindAuthorizeCode, "sig-once", "req-once", "alice", later)), "create")
		must(t, s.DeactivateOAuthRequest(ctx, store.KindAuthorizeCode, "sig-once"), "first deactivation")
		wantErr(t, s.DeactivateOAuthRequest(ctx, store.KindAuthorizeCode, "sig-once"), store.ErrConflict, "second deactivation")
		got, err := s.GetOAuthRequest(ctx, store.KindAuthorizeCode, "sig-once")
		must(t, err, "an inactive request is still readable")
		if got.Active {
			t.Error("request still active")
		}
	})

	t.Run("of 20 concurrent deactivations exactly one wins", func(t *testing.T) {
		must(t, s.CreateOAuthRequest(ctx, oauthRequest(store.KindAuthorizeCode, "sig-race", "req-race", "alice", later)), "create")
		errs := race(20, func(int) error { return s.DeactivateOAuthRequest(ctx, store.KindAuthorizeCode, "sig-race") })
		wins, losses := tally(t, errs, store.ErrConflict)
		if wins != 1 || losses != 19 {
			t.Fatalf("%d wins and %d conflicts, want 1 and 19", wins, losses)
		}
	})

	t.Run("a code redeems once, retiring its pkce and openid records with it even when the code was used", func(t *testing.T) {
		must(t, s.CreateOAuthRequests(ctx, []store.OAuthRequest{
			oauthRequest(store.KindAuthorizeCode, "sig-redeem", "req-redeem", "alice", later),
			oauthRequest(store.KindPKCE, "sig-redeem", "req-redeem", "alice", later),
			oauthRequest(store.KindOIDC, "sig-redeem", "req-redeem", "alice", later),
		}), "create")
		retire := []store.OAuthKind{store.KindPKCE, store.KindOIDC}
		errs := race(10, func(int) error { return s.RedeemAuthorizeCode(ctx, "sig-redeem", retire, base) })
		if wins, losses := tally(t, errs, store.ErrConflict); wins != 1 || losses != 9 {
			t.Fatalf("%d wins and %d conflicts, want 1 and 9", wins, losses)
		}
		got, err := s.GetOAuthRequests(ctx, "sig-redeem", []store.OAuthKind{store.KindAuthorizeCode, store.KindPKCE, store.KindOIDC})
		must(t, err, "get")
		if len(got) != 3 {
			t.Fatalf("%d records after the redemption, want 3", len(got))
		}
		for _, r := range got {
			if r.Active {
				t.Errorf("the %s record is still active", r.Kind)
			}
			want := later // the used code stays for replay detection
			if r.Kind != store.KindAuthorizeCode {
				want = base
			}
			sameTime(t, string(r.Kind)+" expiry", r.ExpiresAt, want)
		}

		must(t, s.CreateOAuthRequests(ctx, []store.OAuthRequest{
			oauthRequest(store.KindPKCE, "sig-redeem-lone", "req-lone", "alice", later),
		}), "create a pkce record without its code")
		wantErr(t, s.RedeemAuthorizeCode(ctx, "sig-redeem-lone", retire, base), store.ErrNotFound, "redeem a missing code")
		if r, err := s.GetOAuthRequest(ctx, store.KindPKCE, "sig-redeem-lone"); err != nil || r.Active {
			t.Errorf("the pkce record of a missing code: active %v, err %v; want retired", r.Active, err)
		}
	})

	t.Run("a record read says whether its subject is an active user", func(t *testing.T) {
		for _, u := range []store.User{{ID: "holder-on"}, {ID: "holder-off", Inactive: true}} {
			_, _, err := s.PutUser(ctx, u, 0)
			must(t, err, "put user "+u.ID)
		}
		for _, tc := range []struct {
			subject string
			want    store.HolderState
		}{
			{"holder-on", store.HolderActive},
			{"holder-off", store.HolderInactive},
			{"holder-never-existed", store.HolderInactive},
			{"", store.HolderInactive},
		} {
			sig := "sig-holder-" + tc.subject
			must(t, s.CreateOAuthRequests(ctx, []store.OAuthRequest{
				oauthRequest(store.KindAuthorizeCode, sig, "req-"+sig, tc.subject, later),
				oauthRequest(store.KindRefreshToken, sig, "req-"+sig, tc.subject, later),
			}), "create for "+tc.subject)
			one, err := s.GetOAuthRequest(ctx, store.KindRefreshToken, sig)
			must(t, err, "get")
			several, err := s.GetOAuthRequests(ctx, sig, []store.OAuthKind{store.KindAuthorizeCode})
			must(t, err, "get several")
			if one.Holder != tc.want || len(several) != 1 || several[0].Holder != tc.want {
				t.Errorf("subject %q: holder %v and %v, want %v", tc.subject, one.Holder, several, tc.want)
			}
			must(t, s.CreateOAuthRequest(ctx, oauthRequest(store.KindAccessToken, sig, "req-"+sig, tc.subject, later)), "create access token")
			if at, err := s.GetOAuthRequest(ctx, store.KindAccessToken, sig); err != nil || at.Holder != store.HolderUnread {
				t.Errorf("subject %q: an access token read with holder %v (err %v), want unread", tc.subject, at.Holder, err)
			}
		}
	})

	t.Run("deactivating by request id touches only that request's records of that kind", func(t *testing.T) {
		for i, r := range []store.OAuthRequest{
			oauthRequest(store.KindRefreshToken, "sig-fam-1", "req-fam", "bob", later),
			oauthRequest(store.KindRefreshToken, "sig-fam-2", "req-fam", "bob", later),
			oauthRequest(store.KindAccessToken, "sig-fam-3", "req-fam", "bob", later),
			oauthRequest(store.KindRefreshToken, "sig-other", "req-other", "bob", later),
		} {
			must(t, s.CreateOAuthRequest(ctx, r), fmt.Sprint("create ", i))
		}
		must(t, s.DeactivateOAuthRequestsByRequestID(ctx, store.KindRefreshToken, "req-fam"), "deactivate")
		want := map[string]bool{"sig-fam-1": false, "sig-fam-2": false, "sig-other": true}
		for sig, active := range want {
			got, err := s.GetOAuthRequest(ctx, store.KindRefreshToken, sig)
			must(t, err, "get "+sig)
			if got.Active != active {
				t.Errorf("%s active = %v, want %v", sig, got.Active, active)
			}
		}
		at, err := s.GetOAuthRequest(ctx, store.KindAccessToken, "sig-fam-3")
		must(t, err, "get access token")
		if !at.Active {
			t.Error("the access token of the same request was deactivated, want only refresh tokens")
		}
		must(t, s.DeactivateOAuthRequestsByRequestID(ctx, store.KindRefreshToken, "req-fam"), "deactivating again is not an error")
		must(t, s.DeactivateOAuthRequestsByRequestID(ctx, store.KindRefreshToken, "req-none"), "deactivating an unknown request is not an error")
	})

	t.Run("deleting by request id removes only that request's records of that kind", func(t *testing.T) {
		for i, r := range []store.OAuthRequest{
			oauthRequest(store.KindAccessToken, "sig-drop-1", "req-drop", "carol", later),
			oauthRequest(store.KindAccessToken, "sig-drop-2", "req-drop", "carol", later),
			oauthRequest(store.KindRefreshToken, "sig-drop-3", "req-drop", "carol", later),
		} {
			must(t, s.CreateOAuthRequest(ctx, r), fmt.Sprint("create ", i))
		}
		must(t, s.DeleteOAuthRequestsByRequestID(ctx, store.KindAccessToken, "req-drop"), "delete")
		for _, sig := range []string{"sig-drop-1", "sig-drop-2"} {
			_, err := s.GetOAuthRequest(ctx, store.KindAccessToken, sig)
			wantErr(t, err, store.ErrNotFound, "get "+sig)
		}
		_, err := s.GetOAuthRequest(ctx, store.KindRefreshToken, "sig-drop-3")
		must(t, err, "the refresh token stays")
		must(t, s.DeleteOAuthRequestsByRequestID(ctx, store.KindAccessToken, "req-drop"), "deleting again is not an error")
	})

	t.Run("deactivating by subject ends every token of that user only", func(t *testing.T) {
		recs := []store.OAuthRequest{
			oauthRequest(store.KindAccessToken, "sig-dave-1", "req-dave-1", "dave", later),
			oauthRequest(store.KindRefreshToken, "sig-dave-2", "req-dave-1", "dave", later),
			oauthRequest(store.KindAuthorizeCode, "sig-dave-3", "req-dave-2", "dave", later),
			oauthRequest(store.KindAccessToken, "sig-erin-1", "req-erin-1", "erin", later),
		}
		for _, r := range recs {
			must(t, s.CreateOAuthRequest(ctx, r), "create "+r.Signature)
		}
		must(t, s.DeactivateOAuthRequestsBySubject(ctx, "dave"), "deactivate")
		for _, r := range recs {
			got, err := s.GetOAuthRequest(ctx, r.Kind, r.Signature)
			must(t, err, "get "+r.Signature)
			if want := r.Subject != "dave"; got.Active != want {
				t.Errorf("%s active = %v, want %v", r.Signature, got.Active, want)
			}
		}
	})

	t.Run("deactivating a user's other tokens keeps one family and other users' tokens", func(t *testing.T) {
		s := newStore(t)
		later := time.Now().Add(time.Hour)
		recs := []store.OAuthRequest{
			oauthRequest(store.KindAccessToken, "sig-fay-1", "req-fay-1", "fay", later),
			oauthRequest(store.KindRefreshToken, "sig-fay-2", "req-fay-1", "fay", later),
			oauthRequest(store.KindAccessToken, "sig-fay-3", "req-fay-2", "fay", later),
			oauthRequest(store.KindRefreshToken, "sig-fay-4", "req-fay-2", "fay", later),
			oauthRequest(store.KindAccessToken, "sig-gus-1", "req-gus-1", "gus", later),
		}
		for _, r := range recs {
			must(t, s.CreateOAuthRequest(ctx, r), "create "+r.Signature)
		}
		must(t, s.DeactivateOtherOAuthRequests(ctx, "fay", "req-fay-1"), "deactivate others")
		for _, r := range recs {
			got, err := s.GetOAuthRequest(ctx, r.Kind, r.Signature)
			must(t, err, "get "+r.Signature)
			if want := r.Subject != "fay" || r.RequestID == "req-fay-1"; got.Active != want {
				t.Errorf("%s active = %v, want %v", r.Signature, got.Active, want)
			}
		}
		must(t, s.DeactivateOtherOAuthRequests(ctx, "fay", ""), "deactivate all")
		if got, _ := s.GetOAuthRequest(ctx, store.KindAccessToken, "sig-fay-1"); got.Active {
			t.Error("an empty keep id kept a family")
		}
	})

	t.Run("purging expired requests keeps live ones and counts what it removed", func(t *testing.T) {
		s := newStore(t)
		cut := base.Add(24 * time.Hour)
		for i, exp := range []time.Time{cut.Add(-time.Hour), cut.Add(-time.Second), cut.Add(time.Second), cut.Add(time.Hour)} {
			must(t, s.CreateOAuthRequest(ctx, oauthRequest(store.KindAccessToken, fmt.Sprint("sig-exp-", i), "req-exp", "frank", exp)), "create")
		}
		n, err := s.DeleteExpiredOAuthRequests(ctx, cut)
		must(t, err, "purge")
		if n != 2 {
			t.Errorf("purged %d, want 2", n)
		}
		for i, want := range []error{store.ErrNotFound, store.ErrNotFound, nil, nil} {
			_, err := s.GetOAuthRequest(ctx, store.KindAccessToken, fmt.Sprint("sig-exp-", i))
			if want == nil {
				must(t, err, fmt.Sprint("live request ", i))
			} else {
				wantErr(t, err, want, fmt.Sprint("expired request ", i))
			}
		}
	})
}
