package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a run: the table's data.
type Report struct {
	Server      string    `json:"server"`
	Date        time.Time `json:"date"`
	Machine     string    `json:"machine"`
	Concurrency int       `json:"concurrency"`
	Duration    string    `json:"duration"`
	MaxRequests int       `json:"maxRequestsPerScenario"`
	Users       int       `json:"users"`
	TOTPUsers   int       `json:"totpUsers"`
	Memory      string    `json:"memorySource"`
	Floor       Floor     `json:"floor"`
	Scenarios   []Result  `json:"scenarios"`
}

// Result is one scenario's row.
type Result struct {
	Name           string            `json:"name"`
	Requests       int               `json:"requests"` // completed units (ok + errors)
	Errors         int               `json:"errors"`
	ErrorKinds     map[string]int    `json:"errorKinds,omitempty"`
	ErrorSamples   map[string]string `json:"errorSamples,omitempty"`
	ElapsedSeconds float64           `json:"elapsedSeconds"`
	PerSec         float64           `json:"perSec"` // successful units per second
	P50Ms          float64           `json:"p50Ms"`
	P90Ms          float64           `json:"p90Ms"`
	P99Ms          float64           `json:"p99Ms"`
	MaxMs          float64           `json:"maxMs"`
	PeakRSSBytes   uint64            `json:"peakRssBytes,omitempty"`
	// ProcessPeakRSSBytes is VmHWM as read at the end: since the reset
	// when PeakRSSHow is VmHWM, else since the server started.
	ProcessPeakRSSBytes uint64 `json:"processPeakRssBytes,omitempty"`
	PeakRSSHow          string `json:"peakRssHow,omitempty"`
	// Floor names the bound: "password hash" or "ES256"; empty for none.
	Floor          string   `json:"floor,omitempty"`
	FloorPerSec    float64  `json:"floorPerSec,omitempty"`
	PercentOfFloor *float64 `json:"percentOfFloor,omitempty"`
	Stopped        string   `json:"stopped,omitempty"`
	// ServerCores and BenchCores are the average CPU cores the server
	// (known with --pid) and this tool used during the scenario: on one
	// machine they share the cores the floor was measured on.
	ServerCores float64 `json:"serverCores,omitempty"`
	BenchCores  float64 `json:"benchCores"`
	// ServerCPUPerOpMs is the server's CPU time per successful unit (a
	// request, a login): comparable across machines and runs where req/s,
	// which depends on the cores left over, is not.
	ServerCPUPerOpMs float64 `json:"serverCpuPerOpMs,omitempty"`
	// MachineCores is every process's CPU (Linux): beyond the server and
	// the bench, the database's processes and anything else running.
	MachineCores float64 `json:"machineCores,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// result builds a row from a scenario's load and the floor.
func result(name string, l load, f Floor) Result {
	res := Result{
		Name:           name,
		Requests:       l.ok,
		ErrorKinds:     l.errors,
		ErrorSamples:   l.samples,
		ElapsedSeconds: l.elapsed.Seconds(),
		P50Ms:          ms(percentile(l.latencies, 50)),
		P90Ms:          ms(percentile(l.latencies, 90)),
		P99Ms:          ms(percentile(l.latencies, 99)),
		MaxMs:          ms(percentile(l.latencies, 100)),
		Stopped:        l.stopped,
	}
	for _, n := range l.errors {
		res.Errors += n
	}
	res.Requests += res.Errors
	if len(res.ErrorKinds) == 0 {
		res.ErrorKinds, res.ErrorSamples = nil, nil
	}
	if l.elapsed > 0 {
		res.PerSec = float64(l.ok) / l.elapsed.Seconds()
	}
	switch name {
	case ScenarioLogin, ScenarioLoginPassword:
		// One password hash per login; the code exchange's client-secret
		// check is a cache hit.
		res.Floor, res.FloorPerSec = "password hash", f.PasswordHashPerSec
	case ScenarioTokenCCJWT:
		res.Floor, res.FloorPerSec = "ES256", f.ES256PerSec
	}
	if res.FloorPerSec > 0 {
		pct := 100 * res.PerSec / res.FloorPerSec
		res.PercentOfFloor = &pct
	}
	return res
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as one aligned table with its context.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "gatehouse-bench  %s  %s\n", r.Server, r.Date.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "load: concurrency %d, %s per scenario (at most %s requests), users %s password-only + %s with TOTP\n",
		r.Concurrency, r.Duration, count(float64(r.MaxRequests)), count(float64(r.Users)), count(float64(r.TOTPUsers)))
	f := r.Floor
	fmt.Fprintf(&b, "floor (this machine, %d goroutines): argon2id m=%d t=%d p=%d %s/s; client secret uncached %s/s, cached (HMAC) %s/s; ES256 JWT %s/s\n\n",
		f.GOMAXPROCS, f.Argon2.MemoryKiB, f.Argon2.Iterations, f.Argon2.Parallelism,
		rate(f.PasswordHashPerSec), rate(f.SecretCheckUncachedPerSec), rate(f.SecretCheckCachedPerSec), rate(f.ES256PerSec))

	width, tw := r.nameWidth(), tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\trequests\treq/s\tp50\tp90\tp99\tmax\terrors\tpeak RSS\tCPU srv/bench/all\tsrv CPU/op\t%% of floor\t\n", width, "scenario")
	for _, s := range r.Scenarios {
		pct := "n/a"
		if s.PercentOfFloor != nil {
			pct = fmt.Sprintf("%.1f%% %s", *s.PercentOfFloor, s.Floor)
		}
		rss := "-"
		if s.PeakRSSBytes > 0 {
			rss = mib(s.PeakRSSBytes)
		}
		cpu := "-"
		if s.ServerCores > 0 {
			cpu = fmt.Sprintf("%.2f", s.ServerCores)
		}
		cpu += fmt.Sprintf("/%.2f/", s.BenchCores)
		if s.MachineCores > 0 {
			cpu += fmt.Sprintf("%.2f", s.MachineCores)
		} else {
			cpu += "-"
		}
		perOp := "-"
		if s.ServerCPUPerOpMs > 0 {
			perOp = dur(s.ServerCPUPerOpMs)
		}
		fmt.Fprintf(tw, "%-*s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t\n", width, s.Name, s.Requests, rate(s.PerSec),
			dur(s.P50Ms), dur(s.P90Ms), dur(s.P99Ms), dur(s.MaxMs), s.Errors, rss, cpu, perOp, pct)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, s := range r.Scenarios {
		kinds := make([]string, 0, len(s.ErrorKinds))
		for k := range s.ErrorKinds {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		for _, k := range kinds {
			notes = append(notes, fmt.Sprintf("%s: %d × %s, e.g. %s", s.Name, s.ErrorKinds[k], k, s.ErrorSamples[k]))
		}
		if s.Stopped != "" && s.Stopped != "request budget reached" {
			notes = append(notes, fmt.Sprintf("%s: stopped early: %s", s.Name, s.Stopped))
		} else if s.Stopped != "" {
			notes = append(notes, fmt.Sprintf("%s: %s after %.1fs", s.Name, s.Stopped, s.ElapsedSeconds))
		}
	}
	if r.Memory != "" {
		notes = append(notes, "peak RSS: "+r.Memory)
	}
	notes = append(notes, "CPU srv/bench/all: average cores used by the server (/proc with --pid, else /metrics), by this tool, and by the whole machine (the rest is the database and anything else running); srv CPU/op: the server's CPU time per successful request or login")
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString("  " + n + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// rate formats a per-second figure with thousands separators.
func rate(v float64) string {
	switch {
	case v <= 0 || math.IsNaN(v):
		return "0"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return count(math.Round(v))
}

func count(v float64) string {
	s := strconv.FormatInt(int64(v), 10)
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

// dur formats milliseconds with about three significant digits.
func dur(msec float64) string {
	switch {
	case msec <= 0:
		return "-"
	case msec < 1:
		return fmt.Sprintf("%.0fµs", msec*1000)
	case msec < 10:
		return fmt.Sprintf("%.2fms", msec)
	case msec < 100:
		return fmt.Sprintf("%.1fms", msec)
	case msec < 1000:
		return fmt.Sprintf("%.0fms", msec)
	}
	return fmt.Sprintf("%.2fs", msec/1000)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// ReadReport reads a report written by WriteJSON (--json).
func ReadReport(r io.Reader) (*Report, error) {
	var rep Report
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	return &rep, nil
}

// WriteComparison writes, for every scenario of r that base ran too, the
// figures of both runs and the change: req/s, p99, the server's CPU per
// operation and the share of the floor; then both runs' floors, which say
// how much of a change is the machine's.
func (r *Report) WriteComparison(w io.Writer, base *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "compared with the run of %s (%s)\n", base.Date.UTC().Format("2006-01-02 15:04 UTC"), base.Server)
	width, tw := r.nameWidth(), tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\treq/s before\tafter\tchange\tp99 before\tafter\tsrv CPU/op before\tafter\tchange\t%% of floor before\tafter\t\n", width, "scenario")
	for _, s := range r.Scenarios {
		i := slices.IndexFunc(base.Scenarios, func(o Result) bool { return o.Name == s.Name })
		if i < 0 {
			continue
		}
		o := base.Scenarios[i]
		floor := func(p *float64) string {
			if p == nil {
				return "n/a"
			}
			return fmt.Sprintf("%.1f%%", *p)
		}
		fmt.Fprintf(tw, "%-*s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", width, s.Name,
			rate(o.PerSec), rate(s.PerSec), change(o.PerSec, s.PerSec),
			dur(o.P99Ms), dur(s.P99Ms),
			dur(o.ServerCPUPerOpMs), dur(s.ServerCPUPerOpMs), change(o.ServerCPUPerOpMs, s.ServerCPUPerOpMs),
			floor(o.PercentOfFloor), floor(s.PercentOfFloor))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(&b, "floors before: argon2id %s/s, ES256 %s/s; after: argon2id %s/s, ES256 %s/s\n",
		rate(base.Floor.PasswordHashPerSec), rate(base.Floor.ES256PerSec), rate(r.Floor.PasswordHashPerSec), rate(r.Floor.ES256PerSec))
	_, err := io.WriteString(w, b.String())
	return err
}

// change is the relative change from a to b, "-" when either is unknown.
func change(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%+.1f%%", 100*(b-a)/a)
}

// nameWidth is the width of the tables' first column. Numbers align
// right; the names are padded to it so they read left-aligned.
func (r *Report) nameWidth() int {
	width := len("scenario")
	for _, s := range r.Scenarios {
		width = max(width, len(s.Name))
	}
	return width
}
