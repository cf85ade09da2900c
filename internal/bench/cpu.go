package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPUTime is the CPU time (user + system) process pid has used.
func procCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read server CPU time: %w", err)
	}
	return parseProcStat(string(b))
}

// parseProcStat reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line; the command name (field 2) may contain spaces, so
// fields are counted after its closing parenthesis.
func parseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("unreadable /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat")
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unreadable /proc stat times")
	}
	return time.Duration(u+st) * time.Second / clockTicks, nil
}

// selfCPUTime is the CPU time this process (the bench) has used.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusyTime is the CPU time all processes of the machine have used
// (the first line of /proc/stat, less idle and iowait).
func machineBusyTime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine CPU time: %w", err)
	}
	return parseMachineStat(string(b))
}

func parseMachineStat(s string) (time.Duration, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, fmt.Errorf("unreadable /proc/stat")
	}
	var busy uint64
	// user nice system idle iowait irq softirq steal (guest time is
	// already counted in user).
	for i, v := range f[1:min(len(f), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unreadable /proc/stat")
		}
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// cpuMeter measures the cores the server, the bench and the whole machine
// used over a scenario.
type cpuMeter struct {
	server                   func() (time.Duration, error) // the server's CPU time so far
	start                    time.Time
	server0, self0, machine0 time.Duration
	serverOK, machineOK      bool
}

// startCPU starts measuring; server reads the server's CPU time (from
// /proc with --pid, else from /metrics).
func startCPU(server func() (time.Duration, error)) *cpuMeter {
	m := &cpuMeter{server: server, start: time.Now(), self0: selfCPUTime()}
	if t, err := server(); err == nil && t > 0 {
		m.server0, m.serverOK = t, true
	}
	if t, err := machineBusyTime(); err == nil {
		m.machine0, m.machineOK = t, true
	}
	return m
}

// cores returns the average cores used since start by the server (0 when
// unknown), by the bench, and by the whole machine (0 when unknown): what
// is left is the database's processes and anything else running.
func (m *cpuMeter) cores() (server, self, machine float64) {
	wall := time.Since(m.start).Seconds()
	if wall <= 0 {
		return 0, 0, 0
	}
	self = (selfCPUTime() - m.self0).Seconds() / wall
	if m.serverOK {
		if t, err := m.server(); err == nil {
			server = (t - m.server0).Seconds() / wall
		}
	}
	if m.machineOK {
		if t, err := machineBusyTime(); err == nil {
			machine = (t - m.machine0).Seconds() / wall
		}
	}
	return server, self, machine
}

// settle waits, up to max, until the machine has been nearly idle (below a
// quarter of a core busy) for two seconds in a row. Without /proc/stat it
// returns at once.
func (r *run) settle(ctx context.Context, limit time.Duration) {
	prev, err := machineBusyTime()
	if err != nil {
		return
	}
	start := time.Now()
	quiet := 0
	for time.Since(start) < limit && quiet < 2 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		cur, err := machineBusyTime()
		if err != nil {
			return
		}
		if (cur - prev).Seconds() < 0.25 {
			quiet++
		} else {
			quiet = 0
		}
		prev = cur
	}
	r.progress("settle: the machine was busy for %s after seeding", time.Since(start).Round(time.Second))
}
