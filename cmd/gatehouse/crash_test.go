package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/store"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

const helperServeEnv = "GATEHOUSE_TEST_HELPER_SERVE"

// TestHelperServeProcess is the server process that
// TestRefreshesInFlightAtAKillAreRecoverable starts and kills (the os/exec
// helper-process pattern): it runs `gatehouse serve` with the arguments in
// GATEHOUSE_TEST_HELPER_SERVE and never returns. Run directly, it has
// nothing to do.
func TestHelperServeProcess(t *testing.T) {
	raw := os.Getenv(helperServeEnv)
	if raw == "" {
		t.Skip("started by TestRefreshesInFlightAtAKillAreRecoverable as a child process")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "helper serve arguments:", err)
		os.Exit(2)
	}
	err := run(context.Background(), args, os.Stdout, os.Stderr, os.Getenv)
	fmt.Fprintln(os.Stderr, "serve:", err)
	os.Exit(1)
}

// killable is a gatehouse serve process that the test kills with SIGKILL.
type killable struct {
	t    *testing.T
	args []string
	addr string
	cmd  *exec.Cmd
	log  *syncBuffer
}

func (k *killable) start() {
	k.t.Helper()
	raw, err := json.Marshal(k.args)
	if err != nil {
		k.t.Fatal(err)
	}
	k.cmd = exec.Command(os.Args[0], "-test.run=^TestHelperServeProcess$")
	k.cmd.Env = append(os.Environ(), helperServeEnv+"="+string(raw), "GATEHOUSE_ADMIN_PASSWORD=admin-password-0123")
	k.log = &syncBuffer{}
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	if err := k.cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + k.addr + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	k.kill()
	k.t.Fatalf("the server never became ready:\n%s", k.log)
}

func (k *killable) kill() {
	_ = k.cmd.Process.Kill()
	_ = k.cmd.Wait()
}

// refreshSignature is the store key of an HMAC refresh token (fosite's
// "<key>.<signature>").
func refreshSignature(tok string) string { return tok[strings.LastIndex(tok, ".")+1:] }

func TestRefreshesInFlightAtAKillAreRecoverable(t *testing.T) {
	if os.Getenv(helperServeEnv) != "" {
		t.Skip("inside the helper process")
	}
	backends := []struct {
		name  string
		dbURL func(t *testing.T) string
	}{{"sqlite", func(*testing.T) string { return "" }}}
	if os.Getenv(gormstoretest.PostgresEnv) != "" {
		backends = append(backends, struct {
			name  string
			dbURL func(t *testing.T) string
		}{"postgres", func(t *testing.T) string { return gormstoretest.PostgresDSN(t) }})
	}
	for _, b := range backends {
		t.Run(b.name+": every refresh in flight at a kill -9 is recovered by retrying its token within the grace period", func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			dbURL := b.dbURL(t)
			k := &killable{t: t, addr: freeAddr(t)}
			k.args = []string{"serve", "--config", cheapConfig(t), "--addr", k.addr, "--data-dir", dataDir}
			if dbURL != "" {
				k.args = append(k.args, "--database-url", dbURL)
			}
			k.start()
			defer func() { k.kill() }()
			testRefreshesAcrossKills(t, k, dataDir, dbURL)
		})
	}
}

func testRefreshesAcrossKills(t *testing.T, k *killable, dataDir, dbURL string) {
	base := "http://" + k.addr
	hc := &http.Client{Timeout: 10 * time.Second}
	put := func(path, body string) {
		req, _ := http.NewRequest(http.MethodPut, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/yaml")
		req.SetBasicAuth("admin", "admin-password-0123")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("PUT %s = %d", path, resp.StatusCode)
		}
	}
	// A grace period longer than the default: the retries come after a
	// restart, which takes longer on a loaded machine than a client's retry.
	put("/Client/app", "secret: app-secret-0123456789\ngrant_types: [password, refresh_token]\nscope: [offline_access]\n"+
		"refresh_token_grace_seconds: 30\nauth: {password: {token_format: opaque, refresh_token: true}}\n")
	put("/User/u", "password: user-password-123\n")
	token := func(form url.Values) (string, int, error) {
		req, _ := http.NewRequest(http.MethodPost, base+"/auth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "app-secret-0123456789")
		resp, err := hc.Do(req)
		if err != nil {
			return "", 0, err
		}
		defer resp.Body.Close()
		var body struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return "", resp.StatusCode, err
		}
		return body.RefreshToken, resp.StatusCode, nil
	}
	refresh := func(rt string) (string, int, error) {
		return token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}

	const sessions = 30
	chains := make([]string, sessions)
	for i := range chains {
		rt, status, err := token(url.Values{"grant_type": {"password"}, "username": {"u"}, "password": {"user-password-123"}, "scope": {"offline_access"}})
		if err != nil || status != http.StatusOK || rt == "" {
			t.Fatalf("sign-in %d: %d %v", i, status, err)
		}
		chains[i] = rt
	}

	var st store.Store
	if dbURL == "" {
		s, err := gormstore.OpenSQLite(filepath.Join(dataDir, "gatehouse.db"), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st = s
	} else {
		s, err := gormstore.OpenPostgres(dbURL, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st = s
	}

	// The kill comes after delay, steered so that about half the
	// refreshes of a round are answered: the commits that miss their
	// answer are among the other half.
	inFlight, committed, kills, delay := 0, 0, 0, 5*time.Millisecond
	for round := 0; round < 12 && (committed == 0 || kills < 3); round++ {
		answered := make([]string, sessions)
		var wg sync.WaitGroup
		for i := range chains {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if rt, status, err := refresh(chains[i]); err == nil && status == http.StatusOK {
					answered[i] = rt
				}
			}()
		}
		time.Sleep(delay/2 + rand.N(delay))
		k.kill()
		kills++
		wg.Wait()
		k.start()
		n := 0
		for _, a := range answered {
			if a != "" {
				n++
			}
		}
		switch {
		case n < sessions/3:
			delay *= 2
		case n > 2*sessions/3:
			delay = max(delay/2, time.Millisecond)
		}
		for i := range chains {
			if answered[i] != "" {
				chains[i] = answered[i]
				continue
			}
			inFlight++
			_, err := st.GetOAuthRequest(context.Background(), store.KindRefreshGrace, refreshSignature(chains[i]))
			wasCommitted := err == nil
			if wasCommitted {
				committed++
			}
			rt, status, err := refresh(chains[i])
			if err != nil || status != http.StatusOK || rt == "" {
				t.Fatalf("kill %d, session %d: retrying the token of a refresh in flight at the kill: %d %v (it had committed: %v)",
					kills, i, status, err, wasCommitted)
			}
			chains[i] = rt
		}
	}
	t.Logf("%d kills: %d refreshes in flight, %d of them had committed a pair their client never saw; every one recovered by a retry", kills, inFlight, committed)
	for i, rt := range chains {
		if _, status, err := refresh(rt); err != nil || status != http.StatusOK {
			t.Fatalf("session %d after the kills: %d %v", i, status, err)
		}
	}
}
