package server_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-fhir/hearth/interact"
	"github.com/hearth-fhir/hearth/server"
	"github.com/hearth-fhir/hearth/server/metrics"
)

// TestMetricsAndReadiness: /metrics counts requests by route pattern and
// times store operations, with no ids or values in any label; /readyz
// follows the store.
func TestMetricsAndReadiness(t *testing.T) {
	st := openStore(t)
	m := metrics.New()
	var storeDown error
	ts := httptest.NewServer(server.New(server.Config{Open: true, Metrics: m, Ready: func(context.Context) error { return storeDown }},
		interact.New(m.Store(st), interact.Config{}), slog.New(slog.DiscardHandler)))
	t.Cleanup(ts.Close)
	do(t, ts, "PUT", "/fhir/Patient/secret-id", `{"resourceType":"Patient","id":"secret-id","name":[{"family":"Secretname"}]}`)
	do(t, ts, "GET", "/fhir/Patient/secret-id", "")
	do(t, ts, "GET", "/fhir/Patient?name=Secretname", "")
	do(t, ts, "GET", "/fhir/Patient/nope", "")
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`hearth_http_requests_total{method="GET",route="/fhir/{type}/{id}",status="200"} 1`,
		`hearth_http_requests_total{method="GET",route="/fhir/{type}/{id}",status="404"} 1`,
		`hearth_http_requests_total{method="PUT",route="/fhir/{type}/{id}",status="201"} 1`,
		`hearth_store_operation_duration_seconds_count{op="read"}`,
		`hearth_store_operation_duration_seconds_count{op="transact"} 1`,
		`hearth_store_operation_duration_seconds_count{op="search_ids"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(strings.ToLower(text), "secret") {
		t.Error("/metrics carries an id or a search value")
	}
	if r := do(t, ts, "GET", "/readyz", ""); r.status != 200 {
		t.Errorf("/readyz with the store up: %d", r.status)
	}
	storeDown = errors.New("connection refused")
	if r := do(t, ts, "GET", "/readyz", ""); r.status != 503 {
		t.Errorf("/readyz with the store down: %d", r.status)
	}
}
