package config

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	t.Run("the pool and deadlines default to room for other clients and come from the file and the environment", func(t *testing.T) {
		c, err := Load("", env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if d := c.Database; d.MaxOpenConns != 10 || d.MaxIdleConns != 5 || d.ConnMaxIdleTime != time.Minute ||
			d.ConnMaxLifetime != 30*time.Minute || d.StatementTimeout != 10*time.Second {
			t.Errorf("database defaults = %+v", d)
		}
		if s := c.Server; s.RequestTimeout != 5*time.Second || s.MaxInFlight != 256 {
			t.Errorf("server defaults = %+v", s)
		}
		pool := filepath.Join(dir, "pool.yaml")
		os.WriteFile(pool, []byte("database: {maxOpenConns: 4, maxIdleConns: 2, connMaxIdleTime: 30s, connMaxLifetime: 5m, statementTimeout: 3s}\nserver: {requestTimeout: 2s, maxInFlight: 50}\n"), 0o600)
		c, err = Load(pool, env(map[string]string{
			"GATEHOUSE_DATABASE_MAX_OPEN_CONNS":     "8",
			"GATEHOUSE_DATABASE_CONN_MAX_IDLE_TIME": "45s",
			"GATEHOUSE_SERVER_MAX_IN_FLIGHT":        "70",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if d := c.Database; d.MaxOpenConns != 8 || d.MaxIdleConns != 2 || d.ConnMaxIdleTime != 45*time.Second ||
			d.ConnMaxLifetime != 5*time.Minute || d.StatementTimeout != 3*time.Second {
			t.Errorf("database = %+v", d)
		}
		if s := c.Server; s.RequestTimeout != 2*time.Second || s.MaxInFlight != 70 {
			t.Errorf("server = %+v", s)
		}
		c, err = Load("", env(map[string]string{
			"GATEHOUSE_DATABASE_MAX_IDLE_CONNS":    "3",
			"GATEHOUSE_DATABASE_CONN_MAX_LIFETIME": "1h",
			"GATEHOUSE_DATABASE_STATEMENT_TIMEOUT": "0",
			"GATEHOUSE_SERVER_REQUEST_TIMEOUT":     "750ms",
		}))
		if err != nil {
			t.Fatal(err)
		}
		if c.Database.MaxIdleConns != 3 || c.Database.ConnMaxLifetime != time.Hour || c.Database.StatementTimeout != 0 || c.Server.RequestTimeout != 750*time.Millisecond {
			t.Errorf("from the environment: %+v %+v", c.Database, c.Server)
		}
	})
	t.Run("the client address header defaults to X-Forwarded-For and comes from the file and the environment", func(t *testing.T) {
		c, err := Load("", env(nil))
		if err != nil || c.ClientIPHeader != "X-Forwarded-For" {
			t.Fatalf("default %q, %v", c.ClientIPHeader, err)
		}
		file := filepath.Join(dir, "proxy.yaml")
		os.WriteFile(file, []byte("trustedProxies: [10.0.0.0/8]\nclientIPHeader: X-Real-IP\n"), 0o600)
		if c, err = Load(file, env(nil)); err != nil || c.ClientIPHeader != "X-Real-IP" {
			t.Fatalf("from the file %q, %v", c.ClientIPHeader, err)
		}
		if c, err = Load(file, env(map[string]string{"GATEHOUSE_CLIENT_IP_HEADER": "CF-Connecting-IP"})); err != nil || c.ClientIPHeader != "CF-Connecting-IP" {
			t.Fatalf("from the environment %q, %v", c.ClientIPHeader, err)
		}
	})
	t.Run("the SMTP relay comes from GATEHOUSE_SMTP_* and is checked", func(t *testing.T) {
		c, err := Load("", env(map[string]string{
			"GATEHOUSE_SMTP_HOST": "mailpit", "GATEHOUSE_SMTP_PORT": "1025", "GATEHOUSE_SMTP_TLS": "none",
			"GATEHOUSE_SMTP_FROM": "Gatehouse <no-reply@example.com>", "GATEHOUSE_SMTP_TIMEOUT": "2s",
			"GATEHOUSE_SMTP_USERNAME": "u", "GATEHOUSE_SMTP_PASSWORD": "p",
		}))
		if err != nil {
			t.Fatal(err)
		}
		c.Finish()
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if s := c.SMTP; s.Host != "mailpit" || s.Port != 1025 || s.TLS != "none" || s.Timeout != 2*time.Second || s.Username != "u" || s.Password != "p" {
			t.Errorf("smtp %+v", s)
		}
		for _, bad := range []map[string]string{
			{"GATEHOUSE_SMTP_HOST": "mailpit", "GATEHOUSE_SMTP_TLS": "ssl", "GATEHOUSE_SMTP_FROM": "a@example.com"},
			{"GATEHOUSE_SMTP_HOST": "mailpit"},
			{"GATEHOUSE_SMTP_HOST": "mailpit", "GATEHOUSE_SMTP_FROM": "a@example.com\r\nBcc: e@example.com"},
		} {
			c, err := Load("", env(bad))
			if err != nil {
				t.Fatal(err)
			}
			c.Finish()
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "smtp.") {
				t.Errorf("%v: err = %v, want one naming smtp", bad, err)
			}
		}
	})
	t.Run("the example file loads and shows the pool and request defaults", func(t *testing.T) {
		c, err := Load(filepath.Join("..", "..", "config", "gatehouse.example.yaml"), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if d := Default(); c.Database != d.Database || c.Server != d.Server {
			t.Errorf("example database %+v server %+v; defaults %+v %+v", c.Database, c.Server, d.Database, d.Server)
		}
	})
	t.Run("a malformed number or duration in the environment is an error", func(t *testing.T) {
		for _, kv := range [][2]string{
			{"GATEHOUSE_DATABASE_MAX_OPEN_CONNS", "ten"},
			{"GATEHOUSE_SERVER_REQUEST_TIMEOUT", "5"},
		} {
			if _, err := Load("", env(map[string]string{kv[0]: kv[1]})); err == nil || !strings.Contains(err.Error(), kv[0]) {
				t.Errorf("%s=%s: err = %v, want one naming the variable", kv[0], kv[1], err)
			}
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
		{"a client address header that is no header name is refused", func(c *Config) { c.ClientIPHeader = "X-Real-IP: 1" }, "clientIPHeader"},
		{"an empty client address header is refused", func(c *Config) { c.ClientIPHeader = "" }, "clientIPHeader"},
		{"a negative memory limit is refused", func(c *Config) { c.MemoryLimitMiB = -1 }, "memoryLimitMiB"},
		{"a pool without connections is refused", func(c *Config) { c.Database.MaxOpenConns = 0 }, "database.maxOpenConns"},
		{"more idle connections than open ones are refused", func(c *Config) { c.Database.MaxIdleConns = 11 }, "database.maxIdleConns"},
		{"no idle connections at all are fine", func(c *Config) { c.Database.MaxIdleConns = 0 }, ""},
		{"a negative idle time is refused", func(c *Config) { c.Database.ConnMaxIdleTime = -time.Second }, "database.connMaxIdleTime"},
		{"a statement timeout of 0 turns it off", func(c *Config) { c.Database.StatementTimeout = 0 }, ""},
		{"a statement timeout under a millisecond is refused", func(c *Config) { c.Database.StatementTimeout = time.Microsecond }, "database.statementTimeout"},
		{"a zero request timeout is refused", func(c *Config) { c.Server.RequestTimeout = 0 }, "server.requestTimeout"},
		{"a negative in-flight bound is refused", func(c *Config) { c.Server.MaxInFlight = -1 }, "server.maxInFlight"},
		{"no in-flight bound is fine", func(c *Config) { c.Server.MaxInFlight = 0 }, ""},
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
