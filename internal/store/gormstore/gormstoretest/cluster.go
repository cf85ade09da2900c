package gormstoretest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cluster is a PostgreSQL server of a test's own, in a data directory of
// its own on a free port, for faults that must not touch the shared server:
// stopping it, crashing it, freezing it. It is built from the machine's
// PostgreSQL binaries (Debian's postgresql package, which this machine kind
// has); a machine without them fails the test that asks for one.
type Cluster struct {
	t    testing.TB
	bin  string // the directory of initdb, pg_ctl, postgres
	dir  string // the data directory, which also holds the socket and the log
	port int
	// asUser runs the server as this user when the test runs as root
	// (initdb and postgres refuse root); "" runs them as ourselves.
	asUser string
}

// StartCluster initialises and starts a server, stopped and removed at
// cleanup. Its DSN is DSN().
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		t.Fatalf("a PostgreSQL server of the test's own: %v", err)
	}
	dir, err := os.MkdirTemp("", "gatehouse-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: bin, dir: dir, port: freePort(t)}
	t.Cleanup(func() {
		c.Resume() // a frozen server would ignore the stop
		_ = c.pgCtl("-m", "immediate", "stop")
		_ = os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, PostgreSQL needs the postgres user to run as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		c.asUser = "postgres"
	}
	if out, err := c.run(filepath.Join(bin, "initdb"), "-D", dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.Start()
	return c
}

// DSN is the URL of the cluster's postgres database.
func (c *Cluster) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Start starts the server (again) and waits until it accepts connections.
func (c *Cluster) Start() {
	c.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c max_connections=40", c.port, c.dir)
	if err := c.pgCtl("-l", filepath.Join(c.dir, "server.log"), "-o", opts, "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
		c.t.Fatalf("start PostgreSQL: %v\n%s", err, log)
	}
}

// Stop shuts the server down cleanly: sessions are ended, then it exits.
func (c *Cluster) Stop() {
	c.t.Helper()
	if err := c.pgCtl("-m", "fast", "stop"); err != nil {
		c.t.Fatalf("stop PostgreSQL: %v", err)
	}
}

// Crash kills the server without a shutdown (pg_ctl's immediate mode): the
// next start recovers from the write-ahead log, as after a power cut of the
// database process.
func (c *Cluster) Crash() {
	c.t.Helper()
	if err := c.pgCtl("-m", "immediate", "stop"); err != nil {
		c.t.Fatalf("crash PostgreSQL: %v", err)
	}
}

// Pause freezes every process of the server (SIGSTOP): connections stay
// open and new ones are accepted by the kernel, but nothing answers, as
// with a stalled VM or a network that drops packets without a reset.
func (c *Cluster) Pause() { c.signalAll(syscall.SIGSTOP) }

// Resume lets a paused server go on.
func (c *Cluster) Resume() { c.signalAll(syscall.SIGCONT) }

func (c *Cluster) signalAll(sig syscall.Signal) {
	for _, pid := range c.pids() {
		_ = syscall.Kill(pid, sig)
	}
}

// pids are the postmaster's and its children's process ids.
func (c *Cluster) pids() []int {
	raw, err := os.ReadFile(filepath.Join(c.dir, "postmaster.pid"))
	if err != nil {
		return nil
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	master, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil
	}
	pids := []int{master}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The parent pid is the 2nd field after the parenthesised name.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 {
			if f := strings.Fields(string(stat[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(master) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func (c *Cluster) pgCtl(args ...string) error {
	all := append([]string{"-D", c.dir, "-w"}, args...)
	out, err := c.run(filepath.Join(c.bin, "pg_ctl"), all...)
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if c.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.asUser, "--", name}, args...)...)
	}
	cmd.Dir = c.dir
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
		return out, err
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return out, fmt.Errorf("%s did not finish in 90 s", filepath.Base(name))
	}
}

// postgresBin finds the newest PostgreSQL's binaries.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no initdb under /usr/lib/postgresql/*/bin or on PATH (Debian package postgresql)")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
