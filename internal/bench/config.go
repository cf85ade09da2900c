package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/secret"
)

// Scenario names, in the order they run.
const (
	ScenarioTokenCCJWT     = "token-cc-jwt"
	ScenarioTokenCCOpaque  = "token-cc-opaque"
	ScenarioLogin          = "login"
	ScenarioLoginPassword  = "login-password"
	ScenarioRefresh        = "refresh"
	ScenarioIntrospect     = "introspect"
	ScenarioJWKS           = "jwks"
	ScenarioDiscovery      = "discovery"
	scenarioTokenCCAliases = "token-cc"
)

// AllScenarios lists every scenario in run order.
var AllScenarios = []string{
	ScenarioTokenCCJWT, ScenarioTokenCCOpaque, ScenarioLogin, ScenarioLoginPassword,
	ScenarioRefresh, ScenarioIntrospect, ScenarioJWKS, ScenarioDiscovery,
}

// Config is one benchmark run.
type Config struct {
	// URL is the server's base URL (scheme://host:port).
	URL string
	// AdminUser and AdminPassword are the admin API's Basic credentials.
	AdminUser, AdminPassword string
	// PID is the server's process id: peak RSS comes from /proc/PID/status.
	// 0 reads /metrics instead.
	PID int
	// Scenarios to run (AllScenarios when empty); "token-cc" means both
	// client_credentials scenarios.
	Scenarios []string
	// Duration and Concurrency of each scenario.
	Duration    time.Duration
	Concurrency int
	// MaxRequests bounds each scenario's requests (0: 50,000 per second
	// of Duration, and at least 100,000).
	MaxRequests int
	// Users is how many password-only users to seed (login-password,
	// refresh); TOTPUsers how many users with TOTP to seed and enrol for
	// the login scenario (0: enough for the run, from the password floor).
	Users, TOTPUsers int
	// PasswordUnder: when Users is at most this, users are seeded with
	// `password` (the server hashes each); above it with one `passwordHash`
	// computed here with Argon, so a large seed costs no server hashes.
	PasswordUnder int
	// Prefix names everything the run creates, so re-runs find it again.
	Prefix string
	// StateFile keeps what the server will not show again (client secrets,
	// the users' password, TOTP secrets and last used steps). "" uses the
	// user cache directory.
	StateFile string
	// AllowRemote permits a non-loopback URL.
	AllowRemote bool
	// Argon are the server's argon2id parameters: the floor is measured with
	// them and passwordHash is computed with them.
	Argon secret.Argon2Params
	// FloorTime is how long each floor measurement runs.
	FloorTime time.Duration
	// Settle is how long to wait at most, after seeding, for the machine
	// to go quiet (the database checkpointing, vacuuming); 0 does not wait.
	Settle time.Duration
	// SeedConcurrency is how many seeding requests run at once.
	SeedConcurrency int
	// RequestTimeout bounds one HTTP request.
	RequestTimeout time.Duration
	// Progress receives progress lines (nil: discarded).
	Progress io.Writer
	// Now is the clock (TOTP steps); nil uses time.Now.
	Now func() time.Time
}

// DefaultConfig returns the command's defaults.
func DefaultConfig() Config {
	return Config{
		URL:             "http://127.0.0.1:8080",
		AdminUser:       "admin",
		Duration:        10 * time.Second,
		Concurrency:     32,
		Users:           1000,
		PasswordUnder:   50,
		Prefix:          "bench",
		Argon:           secret.DefaultArgon2,
		FloorTime:       3 * time.Second,
		Settle:          time.Minute,
		SeedConcurrency: 16,
		RequestTimeout:  30 * time.Second,
	}
}

// normalize fills defaults and checks the configuration.
func (c *Config) normalize(ctx context.Context) error {
	u, err := url.Parse(strings.TrimRight(c.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("--url %q: want http(s)://host:port", c.URL)
	}
	c.URL = u.Scheme + "://" + u.Host
	if !c.AllowRemote {
		if err := checkLoopback(ctx, u.Hostname(), net.DefaultResolver.LookupIPAddr); err != nil {
			return err
		}
	}
	if c.AdminUser == "" || c.AdminPassword == "" {
		return errors.New("the admin user and password are required (--admin-password or GATEHOUSE_ADMIN_PASSWORD)")
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = slices.Clone(AllScenarios)
	}
	var want []string
	for _, s := range c.Scenarios {
		s = strings.TrimSpace(s)
		switch {
		case s == "":
		case s == scenarioTokenCCAliases:
			want = append(want, ScenarioTokenCCJWT, ScenarioTokenCCOpaque)
		case s == "all":
			want = append(want, AllScenarios...)
		case slices.Contains(AllScenarios, s):
			want = append(want, s)
		default:
			return fmt.Errorf("unknown scenario %q (want %s, token-cc or all)", s, strings.Join(AllScenarios, ", "))
		}
	}
	// Run order is fixed; duplicates collapse.
	c.Scenarios = nil
	for _, s := range AllScenarios {
		if slices.Contains(want, s) {
			c.Scenarios = append(c.Scenarios, s)
		}
	}
	if c.Duration <= 0 || c.Duration > time.Hour {
		return fmt.Errorf("--duration %s: want more than 0 and at most 1h", c.Duration)
	}
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		return fmt.Errorf("--concurrency %d: want 1 to 4096", c.Concurrency)
	}
	if c.Users < 1 || c.Users > 10_000_000 {
		return fmt.Errorf("--users %d: want 1 to 10,000,000", c.Users)
	}
	if c.TOTPUsers < 0 {
		return fmt.Errorf("--totp-users %d: want 0 (automatic) or more", c.TOTPUsers)
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = max(100_000, int(c.Duration.Seconds()*50_000))
	}
	if err := validPrefix(c.Prefix); err != nil {
		return err
	}
	if c.Argon.MemoryKiB < 8 || c.Argon.Iterations < 1 || c.Argon.Parallelism < 1 {
		return fmt.Errorf("argon2id parameters m=%d t=%d p=%d: want m ≥ 8, t ≥ 1, p ≥ 1", c.Argon.MemoryKiB, c.Argon.Iterations, c.Argon.Parallelism)
	}
	if c.Argon.SaltLen == 0 {
		c.Argon.SaltLen = secret.DefaultArgon2.SaltLen
	}
	if c.Argon.KeyLen == 0 {
		c.Argon.KeyLen = secret.DefaultArgon2.KeyLen
	}
	if c.FloorTime <= 0 {
		c.FloorTime = 3 * time.Second
	}
	if c.SeedConcurrency < 1 {
		c.SeedConcurrency = 16
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

func validPrefix(p string) error {
	if p == "" || len(p) > 32 {
		return fmt.Errorf("--prefix %q: want 1 to 32 characters", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("--prefix %q: use lower-case letters, digits and '-'", p)
		}
	}
	return nil
}

// checkLoopback refuses a host that is not (or does not resolve only to) a
// loopback address: the tool generates load and must not aim it elsewhere
// by accident.
func checkLoopback(ctx context.Context, host string, lookup func(context.Context, string) ([]net.IPAddr, error)) error {
	refuse := func(why string) error {
		return fmt.Errorf("refusing to load %s: %s (pass --allow-remote to benchmark a remote server)", host, why)
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return refuse("not a loopback address")
		}
		return nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return nil
	}
	addrs, err := lookup(ctx, host)
	if err != nil {
		return refuse("it does not resolve: " + err.Error())
	}
	if len(addrs) == 0 {
		return refuse("it resolves to no address")
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return refuse("it resolves to " + a.IP.String() + ", not a loopback address")
		}
	}
	return nil
}
