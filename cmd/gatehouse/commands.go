package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/oauth"
	"github.com/gatehouse/gatehouse/internal/server"
	"github.com/gatehouse/gatehouse/internal/store/gormstore"
)

// env bundles what every database command needs once the flags are parsed.
type env struct {
	cfg       config.Config
	logger    *slog.Logger
	store     *gormstore.Store
	masterKey []byte
	logs      *logWriter
}

// close closes the database and writes out the buffered log lines.
func (e *env) close() {
	e.store.Close()
	e.logs.Close()
}

// open loads the configuration, creates the data dir, opens and migrates the
// database and loads the master key.
func open(ctx context.Context, f *commonFlags, getenv func(string) string, stderr io.Writer) (*env, error) {
	cfg, err := f.load(getenv)
	if err != nil {
		return nil, err
	}
	logs := newLogWriter(stderr)
	logger := newLogger(cfg, logs)
	if err := cfg.EnsureDataDir(); err != nil {
		return nil, err
	}
	st, err := gormstore.OpenWith(cfg.DatabaseURL, cfg.DataDir, postgresOptions(cfg), logger)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		logs.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	key, err := cfg.LoadMasterKey(logger)
	if err != nil {
		st.Close()
		logs.Close()
		return nil, err
	}
	return &env{cfg: cfg, logger: logger, store: st, masterKey: key, logs: logs}, nil
}

// build wires the application on e's store.
func (e *env) build(ctx context.Context, stdout io.Writer) (*server.App, error) {
	hasher := server.NewPasswordHasher(e.cfg)
	adminHash, generated, err := e.cfg.AdminPasswordHash(func(pw string) (string, error) { return hasher.Hash(ctx, pw) })
	if err != nil {
		return nil, err
	}
	if generated != "" {
		// Shown once, on the terminal, never logged; only its hash is kept.
		fmt.Fprintf(stdout, "\nGenerated admin credentials (shown once; set GATEHOUSE_ADMIN_PASSWORD to choose your own):\n  user:     %s\n  password: %s\n\n", e.cfg.Admin.User, generated)
	}
	return server.Build(ctx, e.cfg, server.Deps{Store: e.store, Logger: e.logger, MasterKey: e.masterKey, AdminPasswordHash: adminHash, Hasher: hasher})
}

// withApp opens the database, wires the application, runs fn and closes.
func withApp(ctx context.Context, f *commonFlags, getenv func(string) string, stdout, stderr io.Writer, fn func(*server.App) error) error {
	e, err := open(ctx, f, getenv, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	app, err := e.build(ctx, stdout)
	if err != nil {
		return err
	}
	return fn(app)
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, getenv)
	demo := fs.Bool("demo", false, "apply the demo resources at start (env GATEHOUSE_DEMO)")
	demoFile := fs.String("demo-file", "", "YAML `file` of demo resources (default config/demo.yaml)")
	pprofOn := fs.Bool("pprof", false, "serve /debug/pprof/ behind admin auth (env GATEHOUSE_PPROF)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := open(ctx, &f, getenv, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	if *demo {
		e.cfg.Demo = true
	}
	if *demoFile != "" {
		e.cfg.DemoFile = *demoFile
	}
	if *pprofOn {
		e.cfg.Pprof = true
	}
	app, err := e.build(ctx, stdout)
	if err != nil {
		return err
	}
	if e.cfg.Demo {
		if err := applyFile(ctx, app, e.cfg.DemoFile, stdout); err != nil {
			return fmt.Errorf("demo resources: %w", err)
		}
	}
	// GOMEMLIMIT, when set, is the operator's word and wins.
	if e.cfg.MemoryLimitMiB > 0 && getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(e.cfg.MemoryLimitMiB) << 20)
	}
	ln, err := net.Listen("tcp", e.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	e.logger.Info("gatehouse listening", "addr", ln.Addr().String(), "issuer", e.cfg.Issuer, "database", e.store.Dialect(), "version", version)
	fmt.Fprintf(stdout, "Gatehouse %s listening on http://%s (issuer %s)\n", version, ln.Addr(), e.cfg.Issuer)
	return app.Serve(ctx, ln, 15*time.Second)
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	e, err := open(ctx, &f, getenv, stderr)
	if err != nil {
		return err
	}
	defer e.close()
	applied, latest, err := e.store.MigrationStatus(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "database schema at version %d (%d migrations applied)\n", latest, len(applied))
	return nil
}

func cmdApply(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, getenv)
	file := fs.String("f", "", "multi-document YAML `file` of resources (- for standard input)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("apply: -f FILE is required")
	}
	return withApp(ctx, &f, getenv, stdout, stderr, func(app *server.App) error {
		return applyFile(ctx, app, *file, stdout)
	})
}

// applyFile PUTs every resource of a YAML file through the admin API's
// validation and prints one line per resource.
func applyFile(ctx context.Context, app *server.App, path string, stdout io.Writer) error {
	var r io.Reader = os.Stdin
	if path != "-" {
		fh, err := os.Open(path)
		if err != nil {
			return err
		}
		defer fh.Close()
		r = fh
	}
	results, err := app.Admin.Apply(ctx, r)
	if err != nil {
		return fmt.Errorf("apply %s: %w", path, err)
	}
	failed := 0
	for _, res := range results {
		switch {
		case res.Err != nil:
			failed++
			fmt.Fprintf(stdout, "%s/%s: error: %v\n", res.Type, res.ID, res.Err)
		case res.Created:
			fmt.Fprintf(stdout, "%s/%s: created\n", res.Type, res.ID)
		default:
			fmt.Fprintf(stdout, "%s/%s: updated\n", res.Type, res.ID)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d resources were not applied", failed, len(results))
	}
	return nil
}

func cmdKeysRotate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("keys rotate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f commonFlags
	f.register(fs, getenv)
	alg := fs.String("alg", "", "rotate only this algorithm's key ("+strings.Join(oauth.SigningAlgorithms(), " or ")+"); default every one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	algs := oauth.SigningAlgorithms()
	if *alg != "" {
		if !slices.Contains(algs, *alg) {
			return fmt.Errorf("--alg %q: want one of %s", *alg, strings.Join(algs, ", "))
		}
		algs = []string{*alg}
	}
	return withApp(ctx, &f, getenv, stdout, stderr, func(app *server.App) error {
		for _, alg := range algs {
			kid, signsFrom, err := app.OAuth.RotateKey(ctx, alg)
			if err != nil {
				return fmt.Errorf("rotate %s key: %w", alg, err)
			}
			fmt.Fprintf(stdout, "new %s signing key %s is published in the JWKS now and signs from %s; "+
				"the current %s key signs until then and stays in the JWKS until its tokens expire\n", alg, kid, signsFrom.UTC().Format(time.RFC3339), alg)
		}
		return nil
	})
}

// postgresOptions turns the database settings into the store's: in the
// configuration 0 turns a limit off, where the store reads 0 as its default.
func postgresOptions(c config.Config) gormstore.PostgresOptions {
	off := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	idle := c.Database.MaxIdleConns
	if idle == 0 {
		idle = -1
	}
	return gormstore.PostgresOptions{
		MaxOpenConns:     c.Database.MaxOpenConns,
		MaxIdleConns:     idle,
		ConnMaxIdleTime:  off(c.Database.ConnMaxIdleTime),
		ConnMaxLifetime:  off(c.Database.ConnMaxLifetime),
		StatementTimeout: off(c.Database.StatementTimeout),
	}
}
