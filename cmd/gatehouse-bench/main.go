// Command gatehouse-bench drives a running Gatehouse over real HTTP on
// loopback and prints one table (or JSON): per scenario requests/s,
// latency percentiles, errors by kind and the server's peak RSS, next to
// the cryptographic floor measured on the same machine.
//
//	go run ./cmd/gatehouse-bench --admin-password … [--pid N] [--scenarios token-cc,login,…]
//	    [--duration 10s] [--concurrency 32] [--users 1000] [--json] [--compare earlier.json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gatehouse-bench:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg := bench.DefaultConfig()
	fs := flag.NewFlagSet("gatehouse-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: gatehouse-bench [flags]\n\nScenarios: %s (token-cc = both client_credentials scenarios).\n\nFlags:\n",
			strings.Join(bench.AllScenarios, ", "))
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.URL, "url", cfg.URL, "server base `URL` (loopback only unless --allow-remote)")
	fs.StringVar(&cfg.AdminUser, "admin-user", envOr(getenv, "GATEHOUSE_ADMIN_USER", cfg.AdminUser), "admin API `user` (env GATEHOUSE_ADMIN_USER)")
	fs.StringVar(&cfg.AdminPassword, "admin-password", getenv("GATEHOUSE_ADMIN_PASSWORD"), "admin API `password` (env GATEHOUSE_ADMIN_PASSWORD)")
	fs.IntVar(&cfg.PID, "pid", 0, "server process `id`: peak RSS from /proc/PID/status (default: /metrics)")
	scenarios := fs.String("scenarios", "all", "comma-separated scenarios to run")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long each scenario runs")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "concurrent workers per scenario")
	fs.IntVar(&cfg.MaxRequests, "max-requests", 0, "request budget per scenario (default 50,000 per second of duration, at least 100,000)")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "password-only users to seed (login-password, refresh)")
	fs.IntVar(&cfg.TOTPUsers, "totp-users", 0, "users to seed and enrol in TOTP for login (default: enough for the run, from the floor)")
	fs.IntVar(&cfg.PasswordUnder, "password-under", cfg.PasswordUnder, "seed at most `n` users with password (hashed by the server); more get one precomputed passwordHash")
	fs.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "name `prefix` of everything the run creates; a re-run with the same prefix reuses it")
	fs.StringVar(&cfg.StateFile, "state", "", "state `file` with the secrets of seeded clients and users (default in the user cache dir)")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a non-loopback --url")
	argonM := fs.Uint("argon-m", uint(cfg.Argon.MemoryKiB), "server's argon2id memory in `KiB`")
	argonT := fs.Uint("argon-t", uint(cfg.Argon.Iterations), "server's argon2id iterations")
	argonP := fs.Uint("argon-p", uint(cfg.Argon.Parallelism), "server's argon2id parallelism")
	fs.DurationVar(&cfg.FloorTime, "floor-time", cfg.FloorTime, "how long each floor measurement runs")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "after seeding, wait at most this long for the machine to go quiet (0: do not wait)")
	fs.IntVar(&cfg.SeedConcurrency, "seed-concurrency", cfg.SeedConcurrency, "concurrent requests while seeding")
	asJSON := fs.Bool("json", false, "print JSON instead of the table")
	compare := fs.String("compare", "", "a `file` of an earlier run's --json: print the change of each scenario after the table")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *argonM > 1<<22 || *argonT > 1<<10 || *argonP < 1 || *argonP > 255 {
		return errors.New("--argon-m/--argon-t/--argon-p out of range")
	}
	cfg.Argon.MemoryKiB, cfg.Argon.Iterations, cfg.Argon.Parallelism = uint32(*argonM), uint32(*argonT), uint8(*argonP)
	cfg.Scenarios = strings.Split(*scenarios, ",")
	var base *bench.Report
	if *compare != "" {
		f, err := os.Open(*compare)
		if err != nil {
			return fmt.Errorf("--compare: %w", err)
		}
		base, err = bench.ReadReport(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--compare %s: %w", *compare, err)
		}
	}
	if !*quiet {
		cfg.Progress = &stamped{w: stderr, start: time.Now()}
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		return rep.WriteJSON(stdout)
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if base != nil {
		fmt.Fprintln(stdout)
		return rep.WriteComparison(stdout, base)
	}
	return nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// stamped prefixes progress lines with the time since start.
type stamped struct {
	w     io.Writer
	start time.Time
}

func (s *stamped) Write(p []byte) (int, error) {
	_, err := fmt.Fprintf(s.w, "[%6.1fs] %s", time.Since(s.start).Seconds(), p)
	return len(p), err
}
