package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/api"
	"github.com/gatehouse/gatehouse/internal/resource"
)

// rawDo is env.do for answers that are meant to be 5xx (env.do reports
// every 5xx as a failure).
func (e *env) rawDo(method, path string, body any, basic [2]string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	r, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if basic[0] != "" {
		r.SetBasicAuth(basic[0], basic[1])
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// TestStorageUnavailableOnTheAPI: the JSON API and its admin equivalents
// answer storage that cannot serve with 503 and Retry-After, like the
// admin API and the token endpoint.
func TestStorageUnavailableOnTheAPI(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.user(resource.User{ID: "una", Email: "una@example.com"})
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, method, path string
			body               any
			basic              [2]string
			outcome            bool // an OperationOutcome rather than an OAuth-style error
		}{
			{"a password sign-in", http.MethodPost, api.PathSignIn,
				map[string]any{"username": "una", "password": userPassword, "client_id": spaClient}, [2]string{}, false},
			{"a sign-up code request", http.MethodPost, api.PathSignUpCode,
				map[string]any{"client_id": spaClient, "channel": "sms", "destination": "+14155550123"}, [2]string{}, false},
			{"an admin look-up of a user's authenticators", http.MethodGet, "/User/una/$authenticators",
				nil, [2]string{adminUser, adminPass}, true},
		}
		for _, tt := range tests {
			t.Run(tt.name+" with the database closed is 503 with Retry-After", func(t *testing.T) {
				r := e.rawDo(tt.method, tt.path, tt.body, tt.basic)
				if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "2" {
					t.Fatalf("status %d, Retry-After %q; want 503 and 2: %s", r.status, r.header.Get("Retry-After"), r.raw)
				}
				if tt.outcome {
					issue, _ := r.list("issue")[0].(map[string]any)
					if r.str("resourceType") != "OperationOutcome" || issue["code"] != "transient" {
						t.Fatalf("want an OperationOutcome with code transient: %s", r.raw)
					}
				} else if r.str("error") != "temporarily_unavailable" {
					t.Fatalf("error %q, want temporarily_unavailable: %s", r.str("error"), r.raw)
				}
			})
		}
	})
}

// TestReplayedCodesOnTheAPIDoNotLockTheOwnerOut reproduces the fault
// report's finding 5e on the JSON API: eight sign-ins submit one valid code
// at once; one completes, seven are refused, and the owner's next code works.
func TestReplayedCodesOnTheAPIDoNotLockTheOwnerOut(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		secret, _ := e.totpUser("racer")
		const n = 8
		tokens := make([]string, n)
		for i := range tokens {
			r := e.signIn("racer")
			want(t, r, http.StatusOK, "")
			tokens[i] = r.str("mfa_token")
		}
		code := e.totp(secret)
		results := make([]resp, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i] = e.rawDo(http.MethodPost, api.PathSignInAttempt,
					map[string]any{"mfa_token": tokens[i], "client_id": spaClient, "strategy": "totp", "code": code}, [2]string{})
			}()
		}
		close(start)
		wg.Wait()
		complete, refused := 0, 0
		for _, r := range results {
			switch {
			case r.status == http.StatusOK && r.str("status") == api.StatusComplete:
				complete++
			case r.status == http.StatusUnprocessableEntity && r.str("error") == "invalid_code":
				refused++
			default:
				t.Errorf("an attempt answered %d: %s", r.status, r.raw)
			}
		}
		if complete != 1 || refused != n-1 {
			t.Fatalf("%d complete and %d refused, want 1 and %d", complete, refused, n-1)
		}
		e.clock.Advance(30 * time.Second)
		r := e.signIn("racer")
		want(t, r, http.StatusOK, "")
		r = e.post(api.PathSignInAttempt, map[string]any{"mfa_token": r.str("mfa_token"), "client_id": spaClient, "strategy": "totp", "code": e.totp(secret)})
		want(t, r, http.StatusOK, "")
		if r.str("status") != api.StatusComplete {
			t.Fatalf("the owner's next code after the replays: %s, want complete", r.raw)
		}
	})
}
