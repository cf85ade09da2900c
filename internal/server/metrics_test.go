package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/notify/smtptest"
	"github.com/gatehouse/gatehouse/internal/store/gormstore/gormstoretest"
)

// /metrics in the Prometheus format (client_golang): requests by route
// with durations, sign-in and second-factor outcomes, code deliveries by
// channel and result, the database pool and the process.
func TestMetricsTellRoutesOutcomesAndDeliveries(t *testing.T) {
	mail := smtptest.Start(t)
	app := startApp(t, gormstoretest.Open(t), func(c *config.Config) {
		c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS, c.SMTP.From = mail.Host, mail.Port, "none", "Gatehouse <noreply@example.com>"
	})
	putResource(t, app, "/Client/mobile", passwordClientYAML)
	putUser(t, app, "max", "emailVerified: true\ntwoFactor:\n  enabled: true\n  method: email\n")
	form := url.Values{"grant_type": {"password"}, "username": {"max"}, "password": {tfPassword}, "scope": {"openid"}}
	wantStatus(t, tokenRequest(t, app, "mobile", i5Secret, form), http.StatusForbidden, "mfa_required")
	mailedCode(t, mail, 1, "max@example.com")
	form.Set("otp", "000000")
	tokenRequest(t, app, "mobile", i5Secret, form)
	form.Set("password", "wrong-password")
	tokenRequest(t, app, "mobile", i5Secret, form)
	browserFor(t, app).get(app.URL + "/auth/login")

	m := metricsText(t, app)
	for _, want := range []string{
		`gatehouse_http_request_duration_seconds_count{route="GET /auth/login"} 1`,
		`gatehouse_http_request_duration_seconds_bucket{route="POST /auth/token",le="+Inf"} 3`,
		`gatehouse_http_requests_total{code="4xx"} 3`,
		`gatehouse_audit_events_total{type="login.failure"} 1`,
		`gatehouse_second_factor_checks_total{method="email",result="failure"} 1`,
		`gatehouse_code_deliveries_total{channel="email",result="delivered",via="smtp"} 1`,
		`gatehouse_mail_sent_total 1`,
		`go_sql_max_open_connections{db_name="gatehouse"}`,
		`process_cpu_seconds_total`,
		`process_resident_memory_bytes`,
		`process_resident_memory_peak_bytes`,
		`gatehouse_http_requests_in_flight`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	if strings.Contains(m, "max@example.com") || strings.Contains(m, "/auth/token?") {
		t.Error("/metrics names a user or a query")
	}

	t.Run("every series the Grafana dashboard plots is exported", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join("..", "..", "config", "grafana-dashboard.json"))
		if err != nil {
			t.Fatal(err)
		}
		var dash struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(raw, &dash); err != nil {
			t.Fatalf("the dashboard is not JSON: %v", err)
		}
		n := 0
		for _, p := range dash.Panels {
			for _, tg := range p.Targets {
				for _, name := range seriesName.FindAllString(tg.Expr, -1) {
					n++
					if !strings.Contains(m, "\n"+name) {
						t.Errorf("panel %q plots %s, which /metrics lacks", p.Title, name)
					}
				}
			}
		}
		if n < 10 {
			t.Fatalf("the dashboard names only %d series", n)
		}
	})
	if t.Failed() {
		t.Logf("/metrics:\n%s", m)
	}
}

var seriesName = regexp.MustCompile(`\b(?:gatehouse|go_sql|process)_[a-z_]+`)

// BenchmarkMetricsObserve is what the metrics add to every request.
func BenchmarkMetricsObserve(b *testing.B) {
	m := NewMetrics()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observe("POST /auth/token", http.StatusOK, 3*time.Millisecond)
		}
	})
}
