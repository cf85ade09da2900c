package server

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// Database round trips per operation on the hot paths. The budgets are the
// counts measured when they were set (README, "Performance"); a change that
// adds a statement to the token or login path must raise them knowingly.
const (
	budgetTokenCC       = 2 // client_credentials with the secret cached: read the client, store the token
	budgetLoginWithTOTP = 74
	budgetLoginPassword = 50
)

// statementsDuring counts the SQL statements st runs while fn runs.
func statementsDuring(st *gormstore.Store, fn func()) int64 {
	before := st.Statements()
	fn()
	return st.Statements() - before
}

func TestDatabaseRoundTripsOnHotPaths(t *testing.T) {
	requireTool(t, "oathtool", "oathtool")
	st := gormstoretest.OpenSQLite(t)
	app := startApp(t, st)
	app.mustPut("/Client/mywebapp", webClientYAML)
	app.mustPut("/Client/svc", "secret: svc-secret\ngrant_types: [client_credentials]\nauth: {client_credentials: {token_format: opaque}}\n")
	app.mustPut("/Client/svcjwt", "secret: svc-secret\ngrant_types: [client_credentials]\nauth: {client_credentials: {token_format: jwt}}\n")

	tokenCC := func(id string) {
		req, _ := http.NewRequest(http.MethodPost, app.URL+"/auth/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, "svc-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("token = %d", resp.StatusCode)
		}
	}
	for _, id := range []string{"svc", "svcjwt"} {
		tokenCC(id) // warm the secret cache
		n := statementsDuring(st, func() { tokenCC(id) })
		t.Logf("client_credentials (%s), secret cached: %d statements", id, n)
		if n > budgetTokenCC {
			t.Errorf("client_credentials (%s) ran %d statements, budget %d", id, n, budgetTokenCC)
		}
	}

	a, _ := enrolUser(t, app, "rtuser", "")
	n := statementsDuring(st, func() { loginWithCode(t, app, "mywebapp", a.user, a.next(t)) })
	t.Logf("browser login with TOTP (authorize → login → code → token exchange): %d statements", n)
	if n > budgetLoginWithTOTP {
		t.Errorf("a TOTP login ran %d statements, budget %d", n, budgetLoginWithTOTP)
	}

	putUser(t, app, "rtplain", "")
	n = statementsDuring(st, func() {
		l := newOAuthLogin(app, "mywebapp")
		b := browserFor(t, app)
		l.exchange(t, toClient(t, b, passwordStep(t, b, l.URL, "rtplain")))
	})
	t.Logf("browser login with a password only: %d statements", n)
	if n > budgetLoginPassword {
		t.Errorf("a password login ran %d statements, budget %d", n, budgetLoginPassword)
	}
}
