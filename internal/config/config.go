package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is every setting. YAML keys are documented in config/gatehouse.example.yaml.
type Config struct {
	Addr        string `yaml:"addr"`
	Issuer      string `yaml:"issuer"`
	DataDir     string `yaml:"dataDir"`
	DatabaseURL string `yaml:"databaseUrl"`
	Dev         bool   `yaml:"dev"`
	Demo        bool   `yaml:"demo"`
	DemoFile    string `yaml:"demoFile"`
	// MasterKey is 32 bytes, base64 (std or url) or 64 hex characters. Empty:
	// read or generate data/master.key. Processes sharing one database must share it.
	MasterKey string `yaml:"masterKey"`

	// Database tunes the PostgreSQL connection pool and bounds its
	// statements; SQLite keeps its own small pool (the keys do not apply).
	Database struct {
		// MaxOpenConns bounds the connections one process opens; several
		// processes need MaxOpenConns each under the server's
		// max_connections, with room left for other clients.
		MaxOpenConns int `yaml:"maxOpenConns"`
		// MaxIdleConns is how many stay open unused (at most MaxOpenConns).
		MaxIdleConns int `yaml:"maxIdleConns"`
		// ConnMaxIdleTime closes a connection unused this long (0: never).
		ConnMaxIdleTime time.Duration `yaml:"connMaxIdleTime"`
		// ConnMaxLifetime closes a connection this long after it was
		// opened (0: never).
		ConnMaxLifetime time.Duration `yaml:"connMaxLifetime"`
		// StatementTimeout is PostgreSQL's statement_timeout for every
		// connection (0: none): the server ends a statement that runs
		// longer, also one whose request deadline never reached it.
		StatementTimeout time.Duration `yaml:"statementTimeout"`
	} `yaml:"database"`

	// Server bounds the work of each request and of all of them together.
	Server struct {
		// RequestTimeout is every request's deadline: its database work is
		// cancelled when it passes and the answer is 503 with Retry-After.
		RequestTimeout time.Duration `yaml:"requestTimeout"`
		// MaxInFlight is how many requests are served at once; more are
		// answered 503 with Retry-After at once (0: no bound). Health and
		// metrics are not counted.
		MaxInFlight int `yaml:"maxInFlight"`
	} `yaml:"server"`

	Admin struct {
		User     string `yaml:"user"`
		Password string `yaml:"password"`
	} `yaml:"admin"`

	Log struct {
		Format string `yaml:"format"` // text | json
		Level  string `yaml:"level"`  // debug | info | warn | error
	} `yaml:"log"`

	Webhook struct {
		AllowPrivate bool `yaml:"allowPrivate"`
	} `yaml:"webhook"`

	// SMTP is the server's outgoing mail server: e-mail codes go through
	// it (instead of the webhook) for every AuthConfig without email.smtp
	// of its own. Empty host: no server.
	SMTP struct {
		Host     string `yaml:"host"`
		Port     int    `yaml:"port"` // 0: 587 (starttls), 465 (tls), 25 (none)
		Username string `yaml:"username"`
		Password string `yaml:"password"`
		TLS      string `yaml:"tls"`  // starttls (default) | tls | none
		From     string `yaml:"from"` // sender: "Name <addr>" or addr
		// Timeout bounds one delivery attempt (0: 5s); failures are retried in the background.
		Timeout time.Duration `yaml:"timeout"`
	} `yaml:"smtp"`

	Password struct {
		MemoryKiB   uint32 `yaml:"memoryKiB"`
		Iterations  uint32 `yaml:"iterations"`
		Parallelism uint8  `yaml:"parallelism"`
		// MaxConcurrent bounds hashes running at once (0: GOMAXPROCS).
		MaxConcurrent int `yaml:"maxConcurrent"`
	} `yaml:"password"`

	Session struct {
		IdleTimeout     time.Duration `yaml:"idleTimeout"`
		AbsoluteTimeout time.Duration `yaml:"absoluteTimeout"`
	} `yaml:"session"`

	Tokens struct {
		AuthCodeLifespan     time.Duration `yaml:"authCodeLifespan"`
		AccessTokenLifespan  time.Duration `yaml:"accessTokenLifespan"`
		RefreshTokenLifespan time.Duration `yaml:"refreshTokenLifespan"`
		IDTokenLifespan      time.Duration `yaml:"idTokenLifespan"`
	} `yaml:"tokens"`

	OAuth struct {
		// MinParameterLength is the shortest state and nonce accepted (0: no
		// minimum, as RFC 6749 and OIDC Core; 8 was fosite's entropy check).
		MinParameterLength int `yaml:"minParameterLength"`
		// KeyPublicationPeriod is how long `keys rotate` publishes a new key
		// before it signs; at least the JWKS max-age (5m) plus 1m.
		KeyPublicationPeriod time.Duration `yaml:"keyPublicationPeriod"`
	} `yaml:"oauth"`

	// TrustedProxies are CIDRs whose ClientIPHeader is believed for the client address.
	TrustedProxies []string `yaml:"trustedProxies"`
	// ClientIPHeader is the header in which those proxies name the client
	// (X-Forwarded-For by default; X-Real-IP, CF-Connecting-IP, … hold one
	// address and are read the same way).
	ClientIPHeader string `yaml:"clientIPHeader"`
	// Pprof serves net/http/pprof under /debug/pprof/ behind admin auth.
	Pprof bool `yaml:"pprof"`

	// MemoryLimitMiB is the Go runtime's soft memory limit, for
	// deployments that must cap the heap. Password hashes run in work areas
	// kept outside the Go heap (internal/secret/argon2id), so the default
	// needs none: the heap stays a few MiB under login load. 0 leaves the
	// runtime's default (or GOMEMLIMIT).
	MemoryLimitMiB int `yaml:"memoryLimitMiB"`
}

// Default returns the zero-configuration settings.
func Default() Config {
	var c Config
	c.Addr = "127.0.0.1:8080"
	c.DataDir = "./data"
	c.DemoFile = "config/demo.yaml"
	c.Admin.User = "admin"
	c.Database.MaxOpenConns = 10
	c.Database.MaxIdleConns = 5
	c.Database.ConnMaxIdleTime = time.Minute
	c.Database.ConnMaxLifetime = 30 * time.Minute
	c.Database.StatementTimeout = 10 * time.Second
	c.Server.RequestTimeout = 5 * time.Second
	c.Server.MaxInFlight = 256
	c.ClientIPHeader = "X-Forwarded-For"
	c.Log.Format = "text"
	c.Log.Level = "info"
	c.Password.MemoryKiB = 19 * 1024
	c.Password.Iterations = 2
	c.Password.Parallelism = 1
	c.Session.IdleTimeout = 8 * time.Hour
	c.Session.AbsoluteTimeout = 24 * time.Hour
	c.Tokens.AuthCodeLifespan = 10 * time.Minute
	c.Tokens.AccessTokenLifespan = time.Hour
	c.Tokens.RefreshTokenLifespan = 30 * 24 * time.Hour
	c.Tokens.IDTokenLifespan = time.Hour
	c.OAuth.KeyPublicationPeriod = 10 * time.Minute
	return c
}

// Load returns defaults, overlaid by the YAML file at path (if not empty),
// overlaid by GATEHOUSE_* variables read through getenv.
func Load(path string, getenv func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config %q: %w", path, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		// io.EOF: an empty file is a valid, empty configuration.
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("parse config %q: %w", path, err)
		}
	}
	if err := applyEnv(&c, getenv); err != nil {
		return c, err
	}
	return c, nil
}

func applyEnv(c *Config, getenv func(string) string) error {
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	var errs []error
	boolean := func(name string, dst *bool) {
		if v := getenv(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not true or false", name, v))
				return
			}
			*dst = b
		}
	}
	str("GATEHOUSE_ADDR", &c.Addr)
	str("GATEHOUSE_ISSUER", &c.Issuer)
	str("GATEHOUSE_DATA_DIR", &c.DataDir)
	str("GATEHOUSE_DATABASE_URL", &c.DatabaseURL)
	str("GATEHOUSE_MASTER_KEY", &c.MasterKey)
	str("GATEHOUSE_ADMIN_USER", &c.Admin.User)
	str("GATEHOUSE_ADMIN_PASSWORD", &c.Admin.Password)
	str("GATEHOUSE_LOG_FORMAT", &c.Log.Format)
	str("GATEHOUSE_LOG_LEVEL", &c.Log.Level)
	integer := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number", name, v))
				return
			}
			*dst = n
		}
	}
	duration := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration (such as 5s or 1m)", name, v))
				return
			}
			*dst = d
		}
	}
	integer("GATEHOUSE_DATABASE_MAX_OPEN_CONNS", &c.Database.MaxOpenConns)
	integer("GATEHOUSE_DATABASE_MAX_IDLE_CONNS", &c.Database.MaxIdleConns)
	duration("GATEHOUSE_DATABASE_CONN_MAX_IDLE_TIME", &c.Database.ConnMaxIdleTime)
	duration("GATEHOUSE_DATABASE_CONN_MAX_LIFETIME", &c.Database.ConnMaxLifetime)
	duration("GATEHOUSE_DATABASE_STATEMENT_TIMEOUT", &c.Database.StatementTimeout)
	duration("GATEHOUSE_SERVER_REQUEST_TIMEOUT", &c.Server.RequestTimeout)
	integer("GATEHOUSE_SERVER_MAX_IN_FLIGHT", &c.Server.MaxInFlight)
	str("GATEHOUSE_CLIENT_IP_HEADER", &c.ClientIPHeader)
	boolean("GATEHOUSE_DEV", &c.Dev)
	boolean("GATEHOUSE_DEMO", &c.Demo)
	boolean("GATEHOUSE_WEBHOOK_ALLOW_PRIVATE", &c.Webhook.AllowPrivate)
	boolean("GATEHOUSE_PPROF", &c.Pprof)
	str("GATEHOUSE_SMTP_HOST", &c.SMTP.Host)
	integer("GATEHOUSE_SMTP_PORT", &c.SMTP.Port)
	str("GATEHOUSE_SMTP_USERNAME", &c.SMTP.Username)
	str("GATEHOUSE_SMTP_PASSWORD", &c.SMTP.Password)
	str("GATEHOUSE_SMTP_TLS", &c.SMTP.TLS)
	str("GATEHOUSE_SMTP_FROM", &c.SMTP.From)
	duration("GATEHOUSE_SMTP_TIMEOUT", &c.SMTP.Timeout)
	return errors.Join(errs...)
}

// Finish fills values derived from others (the default issuer).
func (c *Config) Finish() {
	if c.Issuer == "" {
		c.Issuer = "http://" + c.Addr
	}
	c.Issuer = strings.TrimRight(c.Issuer, "/")
}

// Validate reports every invalid setting at once.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: want host:port", c.Addr))
	}
	u, err := url.Parse(c.Issuer)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		errs = append(errs, fmt.Errorf("issuer %q: want an absolute http(s) URL", c.Issuer))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("issuer %q: must not have a query or fragment", c.Issuer))
	case u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) && !c.Dev:
		errs = append(errs, fmt.Errorf("issuer %q: https is required for a non-loopback issuer (or run with --dev)", c.Issuer))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("dataDir: must not be empty"))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", c.Log.Format))
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		errs = append(errs, err)
	}
	if c.Admin.User == "" {
		errs = append(errs, errors.New("admin.user: must not be empty"))
	}
	if c.MasterKey != "" {
		if _, err := DecodeMasterKey(c.MasterKey); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Password.MemoryKiB < 8 || c.Password.Iterations < 1 || c.Password.Parallelism < 1 {
		errs = append(errs, errors.New("password: memoryKiB ≥ 8, iterations ≥ 1, parallelism ≥ 1"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"session.idleTimeout", c.Session.IdleTimeout},
		{"session.absoluteTimeout", c.Session.AbsoluteTimeout},
		{"tokens.authCodeLifespan", c.Tokens.AuthCodeLifespan},
		{"tokens.accessTokenLifespan", c.Tokens.AccessTokenLifespan},
		{"tokens.refreshTokenLifespan", c.Tokens.RefreshTokenLifespan},
		{"tokens.idTokenLifespan", c.Tokens.IDTokenLifespan},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", d.name))
		}
	}
	db := c.Database
	switch {
	case db.MaxOpenConns < 1:
		errs = append(errs, errors.New("database.maxOpenConns: must be at least 1"))
	case db.MaxIdleConns < 0 || db.MaxIdleConns > db.MaxOpenConns:
		errs = append(errs, fmt.Errorf("database.maxIdleConns: must be between 0 and maxOpenConns (%d)", db.MaxOpenConns))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"database.connMaxIdleTime", db.ConnMaxIdleTime},
		{"database.connMaxLifetime", db.ConnMaxLifetime},
		{"database.statementTimeout", db.StatementTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative (0 turns it off)", d.name))
		}
	}
	if db.StatementTimeout > 0 && db.StatementTimeout < time.Millisecond {
		errs = append(errs, errors.New("database.statementTimeout: PostgreSQL counts it in milliseconds; give at least 1ms (or 0 for none)"))
	}
	if c.Server.RequestTimeout <= 0 {
		errs = append(errs, errors.New("server.requestTimeout: must be positive"))
	}
	if c.Server.MaxInFlight < 0 {
		errs = append(errs, errors.New("server.maxInFlight: must not be negative (0: no bound)"))
	}
	if c.OAuth.MinParameterLength < 0 {
		errs = append(errs, errors.New("oauth.minParameterLength: must not be negative"))
	}
	if c.OAuth.KeyPublicationPeriod < 6*time.Minute {
		errs = append(errs, errors.New("oauth.keyPublicationPeriod: must be at least 6m (the JWKS max-age of 5m plus 1m for every process to re-read the keys)"))
	}
	if c.MemoryLimitMiB < 0 {
		errs = append(errs, errors.New("memoryLimitMiB: must not be negative"))
	}
	if sm := c.SMTP; sm.Host != "" {
		switch sm.TLS {
		case "", "starttls", "tls", "none":
		default:
			errs = append(errs, fmt.Errorf("smtp.tls %q: want starttls, tls or none", sm.TLS))
		}
		if sm.Port < 0 || sm.Port > 65535 {
			errs = append(errs, errors.New("smtp.port: must be between 1 and 65535 (0: the TLS mode's default)"))
		}
		if a, err := mail.ParseAddress(sm.From); err != nil || strings.ContainsAny(sm.From, "\r\n") || a.Address == "" {
			errs = append(errs, fmt.Errorf("smtp.from %q: want one e-mail address", sm.From))
		}
		if sm.Timeout < 0 || sm.Timeout > 30*time.Second {
			errs = append(errs, errors.New("smtp.timeout: must be between 0 (5s) and 30s"))
		}
	}
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil {
			errs = append(errs, fmt.Errorf("trustedProxies: %q is not a CIDR", p))
		}
	}
	if !validHeaderName(c.ClientIPHeader) {
		errs = append(errs, fmt.Errorf("clientIPHeader: %q is not a header name", c.ClientIPHeader))
	}
	return errors.Join(errs...)
}

// IsLoopbackHost reports whether host is localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validHeaderName reports whether s is an HTTP header name (an RFC 9110
// token), so a typo in the configuration is refused at start.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}
