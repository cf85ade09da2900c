package oauth

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/resource"
	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// setRefreshGrace sets client id's refresh_token_grace_seconds (nil: the
// default), as an admin PUT would.
func (e *env) setRefreshGrace(id string, seconds *int) {
	e.t.Helper()
	ctx := context.Background()
	rec, err := e.st.GetClient(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := resource.ClientFromStore(rec)
	if err != nil {
		e.t.Fatal(err)
	}
	c.RefreshTokenGraceSeconds = seconds
	out, err := resource.ToStoreClient(c, rec.SecretHash, &rec)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, _, err := e.st.PutClient(ctx, out, 0); err != nil {
		e.t.Fatal(err)
	}
	e.p.ForgetClient(id)
}

// process is another server process on the same database: its own
// provider and HTTP server on store st, with the same master key and clock.
func (e *env) process(st store.Store) *env {
	e.t.Helper()
	o := *e
	o.st = st
	p, err := o.newProvider()
	if err != nil {
		e.t.Fatalf("second process: %v", err)
	}
	o.p = p
	mux := http.NewServeMux()
	p.Register(mux)
	o.srv = httptest.NewServer(mux)
	e.t.Cleanup(o.srv.Close)
	return &o
}

// processes are the servers a test spreads its requests over: one per
// backend, and on PostgreSQL also two processes with their own connection
// pools on one database.
type processes struct {
	envs  []*env
	first *env
}

type processesOpener struct {
	name string
	open func(t *testing.T) processes
}

func allProcesses(t *testing.T) []processesOpener {
	var out []processesOpener
	for _, b := range gormstoretest.Backends(t) {
		out = append(out, processesOpener{b.Name, func(t *testing.T) processes {
			e := newEnv(t, b.Open(t))
			return processes{envs: []*env{e}, first: e}
		}})
	}
	if os.Getenv(gormstoretest.PostgresEnv) != "" {
		out = append(out, processesOpener{"postgres, two processes", func(t *testing.T) processes {
			dsn := gormstoretest.PostgresDSN(t)
			open := func() *gormstore.Store {
				s, err := gormstore.OpenPostgres(dsn, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
			a := open()
			if err := a.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, a)
			return processes{envs: []*env{e, e.process(open())}, first: e}
		}})
	}
	return out
}

func (ps processes) at(i int) *env { return ps.envs[i%len(ps.envs)] }

// setRefreshGrace is env.setRefreshGrace, with every process told (as the
// admin API tells its own; others see it when their client cache expires).
func (ps processes) setRefreshGrace(id string, seconds *int) {
	ps.first.setRefreshGrace(id, seconds)
	for _, e := range ps.envs {
		e.p.ForgetClient(id)
	}
}

// raceRefresh sends n refreshes of rt at once, spread over the processes.
func (ps processes) raceRefresh(n int, rt string) []response {
	out := make([]response, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = ps.at(i).refresh("web", webSecret, rt)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func (e *env) active(tok string) bool {
	e.t.Helper()
	r := e.introspect(tok)
	if r.status != http.StatusOK {
		e.t.Fatalf("introspect: %d %s", r.status, r.raw)
	}
	return r.body["active"] == true
}

func TestRefreshReuseRevokesTheFamilyHoweverItArrives(t *testing.T) {
	const rounds, racers = 25, 6
	tests := []struct {
		name string
		// rotateFirst: the raced token was rotated before the race (every
		// racer is a reuse); otherwise one racer rotates it.
		rotateFirst bool
	}{
		{"racing refreshes of one token revoke the family of the one that won", false},
		{"racing reuses of an already rotated token revoke the family", true},
	}
	for _, o := range allProcesses(t) {
		t.Run(o.name, func(t *testing.T) {
			ps := o.open(t)
			e := ps.first
			ps.setRefreshGrace("web", ptr(0))
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					revoked, racedBefore := 0, e.concurrentReuses()
					for round := range rounds {
						first := e.webTokens("openid", "offline_access")
						rt := first.str("refresh_token")
						issued := []response{first}
						if tc.rotateFirst {
							r := ps.at(round).refresh("web", webSecret, rt)
							if r.status != http.StatusOK {
								t.Fatalf("round %d: the first rotation: %d %s", round, r.status, r.raw)
							}
							issued = append(issued, r)
						}
						wins := 0
						for i, r := range ps.raceRefresh(racers, rt) {
							switch {
							case r.status == http.StatusOK:
								wins++
								issued = append(issued, r)
							case r.status != http.StatusBadRequest || r.str("error") != "invalid_grant":
								t.Fatalf("round %d, racer %d: %d %s, want 200 or 400 invalid_grant", round, i, r.status, r.raw)
							}
						}
						if want := map[bool]int{false: 1, true: 0}[tc.rotateFirst]; wins != want {
							t.Fatalf("round %d: %d racers got tokens, want %d", round, wins, want)
						}
						alive := 0
						for _, r := range issued {
							for _, tok := range []string{r.str("access_token"), r.str("refresh_token")} {
								if ps.at(round + 1).active(tok) {
									alive++
								}
							}
						}
						if alive == 0 {
							revoked++
						} else {
							t.Errorf("round %d: %d tokens of the family still active after a reuse", round, alive)
						}
					}
					t.Logf("family revoked after %d of %d races (%d racers each); %d reuses arrived racing the rotation",
						revoked, rounds, racers, e.concurrentReuses()-racedBefore)
				})
			}
		})
	}
}

func TestRefreshGracePeriod(t *testing.T) {
	for _, o := range allProcesses(t) {
		t.Run(o.name, func(t *testing.T) {
			ps := o.open(t)
			e := ps.first
			t.Run("fifty parallel refreshes of one token within the grace period all get the same pair", func(t *testing.T) {
				rt := e.webTokens("openid", "offline_access").str("refresh_token")
				got := ps.raceRefresh(50, rt)
				for i, r := range got {
					if r.status != http.StatusOK {
						t.Fatalf("refresh %d: %d %s", i, r.status, r.raw)
					}
					if r.str("access_token") != got[0].str("access_token") || r.str("refresh_token") != got[0].str("refresh_token") {
						t.Fatalf("refresh %d got another pair than refresh 0", i)
					}
					if r.str("scope") != got[0].str("scope") || r.str("token_type") != "Bearer" || r.body["expires_in"] == nil {
						t.Fatalf("refresh %d: %s", i, r.raw)
					}
				}
				if !e.active(got[0].str("access_token")) || !e.active(got[0].str("refresh_token")) {
					t.Fatal("the pair given to all fifty is not active")
				}
				next := ps.at(1).refresh("web", webSecret, got[0].str("refresh_token"))
				if next.status != http.StatusOK || next.str("refresh_token") == got[0].str("refresh_token") {
					t.Fatalf("the pair's refresh token does not rotate on: %d %s", next.status, next.raw)
				}
			})

			t.Run("a refresh whose response was lost is retried within the grace period and gets the pair it committed", func(t *testing.T) {
				rt := e.webTokens("openid", "offline_access").str("refresh_token")
				lost := e.lostRefresh(rt)
				if lost.status != http.StatusOK {
					t.Fatalf("the lost refresh: %d %s", lost.status, lost.raw)
				}
				retry := ps.at(1).refresh("web", webSecret, rt)
				if retry.status != http.StatusOK {
					t.Fatalf("retry: %d %s", retry.status, retry.raw)
				}
				if retry.str("access_token") != lost.str("access_token") || retry.str("refresh_token") != lost.str("refresh_token") {
					t.Fatal("the retry got another pair than the one the lost response carried")
				}
				if r := e.refresh("web", webSecret, retry.str("refresh_token")); r.status != http.StatusOK {
					t.Fatalf("the recovered refresh token: %d %s", r.status, r.raw)
				}
			})

			t.Run("the kept pair is sealed at rest", func(t *testing.T) {
				rt := e.webTokens("openid", "offline_access").str("refresh_token")
				r := e.refresh("web", webSecret, rt)
				rec, err := e.st.GetOAuthRequest(context.Background(), store.KindRefreshGrace, e.p.strategy.RefreshTokenSignature(context.Background(), rt))
				if err != nil {
					t.Fatal(err)
				}
				for _, tok := range []string{r.str("access_token"), r.str("refresh_token")} {
					if parts := strings.Split(tok, "."); strings.Contains(string(rec.Session), parts[len(parts)-1]) || strings.Contains(string(rec.Session), tok) {
						t.Fatal("the kept pair is readable in the database")
					}
				}
			})

			graces := []struct {
				name          string
				seconds       *int
				within, after time.Duration
			}{
				{"the default grace of 5 s", nil, 4 * time.Second, 6 * time.Second},
				{"a grace of 20 s", ptr(20), 19 * time.Second, 21 * time.Second},
			}
			for _, g := range graces {
				t.Run("with "+g.name+", a reuse after it is invalid_grant and revokes the family", func(t *testing.T) {
					ps.setRefreshGrace("web", g.seconds)
					first := e.webTokens("openid", "offline_access")
					pair := e.refresh("web", webSecret, first.str("refresh_token"))
					e.clock.Advance(g.within)
					if r := ps.at(1).refresh("web", webSecret, first.str("refresh_token")); r.status != http.StatusOK || r.str("refresh_token") != pair.str("refresh_token") {
						t.Fatalf("within the grace: %d %s", r.status, r.raw)
					}
					e.clock.Advance(g.after - g.within)
					r := ps.at(1).refresh("web", webSecret, first.str("refresh_token"))
					if r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
						t.Fatalf("after the grace: %d %s", r.status, r.raw)
					}
					for _, tok := range []string{pair.str("access_token"), pair.str("refresh_token")} {
						if e.active(tok) {
							t.Fatal("the pair is still active after a reuse past the grace period")
						}
					}
				})
			}
			ps.setRefreshGrace("web", nil)

			t.Run("once the new refresh token was used, the old one is a reuse even within the grace period", func(t *testing.T) {
				first := e.webTokens("openid", "offline_access")
				second := e.refresh("web", webSecret, first.str("refresh_token"))
				third := e.refresh("web", webSecret, second.str("refresh_token"))
				if third.status != http.StatusOK {
					t.Fatalf("refresh of the new token: %d %s", third.status, third.raw)
				}
				if r := ps.at(1).refresh("web", webSecret, first.str("refresh_token")); r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
					t.Fatalf("the first token again: %d %s", r.status, r.raw)
				}
				if e.active(third.str("refresh_token")) || e.active(third.str("access_token")) {
					t.Fatal("the family survived the reuse")
				}
			})

			t.Run("a rotated token of a user whose tokens were ended is refused within the grace period", func(t *testing.T) {
				first := e.webTokens("openid", "offline_access")
				if r := e.refresh("web", webSecret, first.str("refresh_token")); r.status != http.StatusOK {
					t.Fatalf("refresh: %d %s", r.status, r.raw)
				}
				// What a password change does (README, "Security limits").
				if err := e.st.DeactivateOAuthRequestsBySubject(context.Background(), "alice"); err != nil {
					t.Fatal(err)
				}
				if r := ps.at(1).refresh("web", webSecret, first.str("refresh_token")); r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
					t.Fatalf("%d %s", r.status, r.raw)
				}
			})

			t.Run("a grace set to 0 after a rotation makes the rotated token a reuse at once", func(t *testing.T) {
				first := e.webTokens("openid", "offline_access")
				pair := e.refresh("web", webSecret, first.str("refresh_token"))
				ps.setRefreshGrace("web", ptr(0))
				defer ps.setRefreshGrace("web", nil)
				if r := ps.at(1).refresh("web", webSecret, first.str("refresh_token")); r.status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
					t.Fatalf("%d %s", r.status, r.raw)
				}
				if e.active(pair.str("refresh_token")) {
					t.Fatal("the family survived the reuse")
				}
			})

			t.Run("another client cannot replay the token within the grace period", func(t *testing.T) {
				first := e.webTokens("openid", "offline_access")
				e.refresh("web", webSecret, first.str("refresh_token"))
				if r := e.refresh("web-opaque", webSecret, first.str("refresh_token")); r.status == http.StatusOK {
					t.Fatalf("web-opaque replayed web's token: %s", r.raw)
				}
			})
		})
	}
}

// lostRefresh runs a refresh to completion on the server and returns what
// the client would have got: the response never reaches it, as when the
// connection or the process died after the commit.
func (e *env) lostRefresh(rt string) response {
	e.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	req := httptest.NewRequest(http.MethodPost, PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("web", webSecret)
	rec := httptest.NewRecorder()
	mux := http.NewServeMux()
	e.p.Register(mux)
	mux.ServeHTTP(rec, req)
	res := rec.Result()
	return e.read(res)
}

func ptr[T any](v T) *T { return &v }

// concurrentReuses counts the reuses so far found by the rotation (the
// audit events of refreshGrant.settle); with grace 0 those are the ones
// that raced it.
func (e *env) concurrentReuses() int {
	e.t.Helper()
	evs, _, err := e.st.ListAudit(context.Background(), store.AuditFilter{Type: audit.TokenReuse}, store.Page{Count: 1000, Page: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Detail["detected"] == "at_rotation" {
			n++
		}
	}
	return n
}
