package config

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "g.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:9000\nlog: {format: json}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("no file and no environment gives the zero-config defaults", func(t *testing.T) {
		c, err := Load("", env(nil))
		if err != nil {
			t.Fatal(err)
		}
		c.Finish()
		if c.Addr != "127.0.0.1:8080" || c.Issuer != "http://127.0.0.1:8080" || c.DataDir != "./data" || c.Admin.User != "admin" {
			t.Fatalf("defaults = %+v", c)
		}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("environment overrides the file", func(t *testing.T) {
		c, err := Load(file, env(map[string]string{"GATEHOUSE_ADDR": "127.0.0.1:9100", "GATEHOUSE_DEV": "true"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Addr != "127.0.0.1:9100" || c.Log.Format != "json" || !c.Dev {
			t.Fatalf("got %+v", c)
		}
	})
	t.Run("an unknown key in the file is an error", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte("adr: x\n"), 0o600)
		if _, err := Load(bad, env(nil)); err == nil || !strings.Contains(err.Error(), "adr") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("an empty file is accepted", func(t *testing.T) {
		empty := filepath.Join(dir, "empty.yaml")
		os.WriteFile(empty, nil, 0o600)
		if _, err := Load(empty, env(nil)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a malformed boolean is an error", func(t *testing.T) {
		if _, err := Load("", env(map[string]string{"GATEHOUSE_DEV": "yes please"})); err == nil {
			t.Fatal("want error")
		}
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"a loopback http issuer is fine", func(c *Config) { c.Issuer = "http://localhost:8080" }, ""},
		{"a public http issuer needs --dev", func(c *Config) { c.Issuer = "http://auth.example.com" }, "https is required"},
		{"a public http issuer is allowed in dev", func(c *Config) { c.Issuer = "http://auth.example.com"; c.Dev = true }, ""},
		{"an https issuer is fine", func(c *Config) { c.Issuer = "https://auth.example.com" }, ""},
		{"an issuer with a query is refused", func(c *Config) { c.Issuer = "https://a.example?x=1" }, "query"},
		{"a relative issuer is refused", func(c *Config) { c.Issuer = "/auth" }, "absolute"},
		{"a bad master key is refused", func(c *Config) { c.MasterKey = "short" }, "masterKey"},
		{"a bad log format is refused", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"a zero token lifespan is refused", func(c *Config) { c.Tokens.AccessTokenLifespan = 0 }, "accessTokenLifespan"},
		{"a bad proxy CIDR is refused", func(c *Config) { c.TrustedProxies = []string{"10.0.0.1"} }, "CIDR"},
		{"a negative memory limit is refused", func(c *Config) { c.MemoryLimitMiB = -1 }, "memoryLimitMiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(&c)
			c.Finish()
			err := c.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestDataDirSecrets(t *testing.T) {
	c := Default()
	c.DataDir = t.TempDir()
	t.Run("the master key is generated once with mode 0600 and then reused", func(t *testing.T) {
		k1, err := c.LoadMasterKey(discard())
		if err != nil || len(k1) != 32 {
			t.Fatalf("key %d bytes, err %v", len(k1), err)
		}
		st, _ := os.Stat(filepath.Join(c.DataDir, "master.key"))
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v", st.Mode().Perm())
		}
		k2, _ := c.LoadMasterKey(discard())
		if string(k1) != string(k2) {
			t.Fatal("master key changed between starts")
		}
	})
	hash := func(s string) (string, error) {
		return "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43), nil
	}
	t.Run("a generated admin password is returned only on the first start", func(t *testing.T) {
		_, gen, err := c.AdminPasswordHash(hash)
		if err != nil || gen == "" {
			t.Fatalf("first start: gen=%q err=%v", gen, err)
		}
		raw, _ := os.ReadFile(filepath.Join(c.DataDir, "admin-password.hash"))
		if strings.Contains(string(raw), gen) {
			t.Fatal("the password is stored in the clear")
		}
		_, gen2, err := c.AdminPasswordHash(hash)
		if err != nil || gen2 != "" {
			t.Fatalf("second start: gen=%q err=%v", gen2, err)
		}
	})
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
