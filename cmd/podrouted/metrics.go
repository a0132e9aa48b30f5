package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// statusCollector reads the speaker and reconciler at scrape time, so the
// metrics can never disagree with `podroute status`.
type statusCollector struct {
	status *statusServer

	peerUp, peerReceived, peerAccepted, routesDesired, routesInKernel, routeErrors, synced *prometheus.Desc
	writes, deletes, failures, repairs, resyncs                                            *prometheus.Desc
}

func newStatusCollector(s *statusServer) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("podroute_"+name, help, labels, nil)
	}
	return &statusCollector{
		status:         s,
		peerUp:         d("bgp_peer_up", "1 if the BGP session is Established.", "peer", "asn"),
		peerReceived:   d("bgp_peer_prefixes_received", "Prefixes received from the peer.", "peer"),
		peerAccepted:   d("bgp_peer_prefixes_accepted", "Prefixes from the peer accepted by the import policy.", "peer"),
		routesDesired:  d("routes_desired", "Routes podroute wants in the kernel, by kind.", "kind"),
		routesInKernel: d("routes_in_kernel", "Desired routes that are in the kernel."),
		routeErrors:    d("routes_errors", "Learned routes the kernel rejected or podroute refused for their next hops."),
		synced:         d("table_synced", "1 once the table was re-learned after start and stale routes swept."),
		writes:         d("route_writes_total", "Kernel route writes."),
		deletes:        d("route_deletes_total", "Kernel route deletions."),
		failures:       d("route_failures_total", "Kernel route writes that failed."),
		repairs:        d("route_repairs_total", "Routes re-installed after someone removed them."),
		resyncs:        d("route_resyncs_total", "Full kernel resyncs."),
	}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.peerUp, c.peerReceived, c.peerAccepted, c.routesDesired, c.routesInKernel,
		c.routeErrors, c.synced, c.writes, c.deletes, c.failures, c.repairs, c.resyncs} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if peers, err := c.status.speaker.PeerStatus(ctx); err == nil {
		for _, p := range peers {
			up := 0.0
			if p.State == "Established" {
				up = 1
			}
			addr := p.Peer.Address.String()
			ch <- prometheus.MustNewConstMetric(c.peerUp, prometheus.GaugeValue, up, addr, itoa(p.Peer.ASN))
			ch <- prometheus.MustNewConstMetric(c.peerReceived, prometheus.GaugeValue, float64(p.Received), addr)
			ch <- prometheus.MustNewConstMetric(c.peerAccepted, prometheus.GaugeValue, float64(p.Accepted), addr)
		}
	}
	// Running totals: a scrape never walks the route table.
	sum := c.status.routes.Summary()
	for k, n := range map[string]int{"learned": sum.Learned, "blackhole": sum.Blackholes, "stale": sum.Stale} {
		ch <- prometheus.MustNewConstMetric(c.routesDesired, prometheus.GaugeValue, float64(n), k)
	}
	ch <- prometheus.MustNewConstMetric(c.routesInKernel, prometheus.GaugeValue, float64(sum.InKernel))
	ch <- prometheus.MustNewConstMetric(c.routeErrors, prometheus.GaugeValue, float64(sum.Failed+sum.Refused))
	synced := 0.0
	if c.status.routes.Synced() {
		synced = 1
	}
	ch <- prometheus.MustNewConstMetric(c.synced, prometheus.GaugeValue, synced)
	st := c.status.routes.Stats()
	ch <- prometheus.MustNewConstMetric(c.writes, prometheus.CounterValue, float64(st.Writes))
	ch <- prometheus.MustNewConstMetric(c.deletes, prometheus.CounterValue, float64(st.Deletes))
	ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(st.Failures))
	ch <- prometheus.MustNewConstMetric(c.repairs, prometheus.CounterValue, float64(st.Repairs))
	ch <- prometheus.MustNewConstMetric(c.resyncs, prometheus.CounterValue, float64(st.Resyncs))
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// serveMetrics serves /metrics, /healthz (the process answers) and
// /readyz (the table has been learned) on addr.
func serveMetrics(addr string, s *statusServer, reg *prometheus.Registry, log *slog.Logger) *http.Server {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newStatusCollector(s))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.routes.Synced() {
			http.Error(w, "table not re-learned yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("metrics listener", "addr", addr, "err", err)
		return nil
	}
	go func() { _ = srv.Serve(lis) }()
	return srv
}
