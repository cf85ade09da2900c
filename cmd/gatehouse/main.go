// Command gatehouse is the Gatehouse authorization server.
//
//	gatehouse serve [flags]          run the server
//	gatehouse migrate [flags]        apply database migrations and exit
//	gatehouse apply -f FILE [flags]  create or replace the resources in a YAML file
//	gatehouse keys rotate [flags]    publish a new signing key per algorithm (signs after the publication period)
//	gatehouse health --url URL       probe a health endpoint (for container health checks)
//	gatehouse version                print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gatehouse:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: gatehouse <command> [flags]

commands:
  serve            run the server (SQLite in ./data unless configured otherwise)
  migrate          apply database migrations and exit
  apply -f FILE    create or replace every resource of a multi-document YAML file
  keys rotate      publish a new signing key per algorithm (--alg RS256|ES256 for one);
                   it signs after the key publication period
  health --url U   exit 0 when U answers 200 (container health checks)
  version          print the version

Run 'gatehouse <command> -h' for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr, getenv)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr, getenv)
	case "apply":
		return cmdApply(ctx, rest, stdout, stderr, getenv)
	case "keys":
		if len(rest) == 0 || rest[0] != "rotate" {
			return errors.New("usage: gatehouse keys rotate [flags]")
		}
		return cmdKeysRotate(ctx, rest[1:], stdout, stderr, getenv)
	case "health":
		return cmdHealth(ctx, rest, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "gatehouse", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// commonFlags are the flags every command that opens the database shares.
type commonFlags struct {
	configFile, addr, dataDir, issuer, databaseURL, logFormat string
	dev                                                       bool
}

func (f *commonFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&f.configFile, "config", getenv("GATEHOUSE_CONFIG"), "YAML config `file` (env GATEHOUSE_CONFIG)")
	fs.StringVar(&f.addr, "addr", "", "listen `address` (env GATEHOUSE_ADDR; default 127.0.0.1:8080)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data `directory` (env GATEHOUSE_DATA_DIR; default ./data)")
	fs.StringVar(&f.issuer, "issuer", "", "public base `URL` (env GATEHOUSE_ISSUER; default http://<addr>)")
	fs.StringVar(&f.databaseURL, "database-url", "", "database `URL`: postgres://… or sqlite:PATH (env GATEHOUSE_DATABASE_URL)")
	fs.StringVar(&f.logFormat, "log-format", "", "log `format`: text or json (env GATEHOUSE_LOG_FORMAT)")
	fs.BoolVar(&f.dev, "dev", false, "development mode: allow plain http and private webhooks (env GATEHOUSE_DEV)")
}

// load reads the file and environment, then applies the flags that were set.
func (f *commonFlags) load(getenv func(string) string) (config.Config, error) {
	c, err := config.Load(f.configFile, getenv)
	if err != nil {
		return c, err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.Addr, f.addr)
	set(&c.DataDir, f.dataDir)
	set(&c.Issuer, f.issuer)
	set(&c.DatabaseURL, f.databaseURL)
	set(&c.Log.Format, f.logFormat)
	if f.dev {
		c.Dev = true
	}
	c.Finish()
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return c, nil
}

func newLogger(c config.Config, w io.Writer) *slog.Logger {
	level, _ := config.ParseLevel(c.Log.Level) // validated already
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/health/ready", "health endpoint `URL`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", *url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
