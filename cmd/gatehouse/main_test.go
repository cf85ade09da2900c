package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the server writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// noEnv is a getenv with nothing set: the tests run as on a fresh machine.
func noEnv(string) string { return "" }

// cheapConfig writes a config file that lowers the argon2 cost for tests.
func cheapConfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(p, []byte("password: {memoryKiB: 64, iterations: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startServe runs `gatehouse serve` until the returned stop is called.
func startServe(t *testing.T, args ...string) (stdout *syncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), stdout, io.Discard, noEnv) }()
	addr := ""
	for i, a := range args {
		if a == "--addr" {
			addr = args[i+1]
		}
	}
	ok := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited early: %v\n%s", err, stdout)
		default:
		}
		resp, err := http.Get("http://" + addr + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok = true
				break
			}
		}
	}
	if !ok {
		cancel()
		t.Fatalf("server never became ready:\n%s", stdout)
	}
	return stdout, func() error { cancel(); return <-done }
}

func TestServeOnAFreshDataDir(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	addr := freeAddr(t)
	args := []string{"--config", cheapConfig(t), "--addr", addr, "--data-dir", dataDir}

	out, stop := startServe(t, args...)
	m := regexp.MustCompile(`password: (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no generated admin password printed:\n%s", out)
	}
	password := m[1]
	for _, f := range []string{"master.key", "admin-password.hash", "gatehouse.db"} {
		st, err := os.Stat(filepath.Join(dataDir, f))
		if err != nil {
			t.Fatalf("%s not created: %v", f, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s is readable by others: %v", f, st.Mode())
		}
	}
	put := func(path, body string) int {
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/yaml")
		req.SetBasicAuth("admin", password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := put("/User/my-user", "id: my-user\npassword: password\n"); got != http.StatusCreated {
		t.Fatalf("PUT User = %d", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}

	t.Run("a restart keeps the data and prints no password", func(t *testing.T) {
		out, stop := startServe(t, args...)
		defer stop()
		if strings.Contains(out.String(), "password:") {
			t.Fatalf("the admin password was printed again:\n%s", out)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/User/my-user", nil)
		req.SetBasicAuth("admin", password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"my-user"`) {
			t.Fatalf("GET User after restart = %d %s", resp.StatusCode, body)
		}
		if strings.Contains(string(body), "argon2") || strings.Contains(string(body), `"password"`) {
			t.Fatalf("the password hash leaked: %s", body)
		}
	})
}

func TestCommands(t *testing.T) {
	dataDir := t.TempDir()
	cfg := cheapConfig(t)
	tests := []struct {
		name    string
		args    []string
		wantOut string
		wantErr string
	}{
		{"version prints the version", []string{"version"}, "gatehouse dev", ""},
		{"no command is an error", nil, "", "no command"},
		{"an unknown command is an error", []string{"frobnicate"}, "", "unknown command"},
		{"migrate reports the schema version", []string{"migrate", "--config", cfg, "--data-dir", dataDir}, "database schema at version", ""},
		{"apply loads the demo resources", []string{"apply", "--config", cfg, "--data-dir", dataDir, "-f", "../../config/demo.yaml"}, "Client/mywebapp: created", ""},
		{"apply again replaces them", []string{"apply", "--config", cfg, "--data-dir", dataDir, "-f", "../../config/demo.yaml"}, "User/my-user: updated", ""},
		{"apply without -f is an error", []string{"apply", "--data-dir", dataDir}, "", "-f FILE"},
		{"keys rotate announces the new key and when it signs", []string{"keys", "rotate", "--config", cfg, "--data-dir", dataDir}, "is published in the JWKS now and signs from", ""},
		{"keys rotate --alg ES256 rotates only the ES256 key", []string{"keys", "rotate", "--alg", "ES256", "--config", cfg, "--data-dir", dataDir}, "new ES256 signing key", ""},
		{"keys rotate with an unknown --alg is an error", []string{"keys", "rotate", "--alg", "HS256", "--config", cfg, "--data-dir", dataDir}, "", "want one of RS256, ES256"},
		{"a non-loopback http issuer is refused", []string{"migrate", "--data-dir", dataDir, "--issuer", "http://auth.example.com"}, "", "https is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out, io.Discard, noEnv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("output %q does not contain %q", out.String(), tc.wantOut)
			}
		})
	}
}

func TestApplyReportsBadDocuments(t *testing.T) {
	dataDir := t.TempDir()
	file := filepath.Join(t.TempDir(), "mixed.yaml")
	os.WriteFile(file, []byte("resourceType: User\nid: ok-user\npassword: pw\n---\nresourceType: Client\nid: bad\nauth: {authorization_code: {redirect_uri: 'javascript:alert(1)'}}\ngrant_types: [code]\n"), 0o600)
	var out bytes.Buffer
	err := run(context.Background(), []string{"apply", "--config", cheapConfig(t), "--data-dir", dataDir, "-f", file}, &out, io.Discard, noEnv)
	if err == nil || !strings.Contains(err.Error(), "1 of 2") {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(out.String(), "User/ok-user: created") || !strings.Contains(out.String(), "Client/bad: error") {
		t.Fatalf("output:\n%s", out.String())
	}
}
