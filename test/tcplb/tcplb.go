// Package tcplb is a small TCP load balancer for tests of several proxies
// serving as one: round robin over the backends that pass their health
// check, as an AWS Network Load Balancer or a Kubernetes Service does with
// readiness probes. A connection goes to the next healthy backend; when
// that one refuses it, to the one after.
package tcplb

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rdsgate/rdsgate/internal/testenv"
)

// Backend is one replica: where it listens, and the URL that says whether
// it takes new connections (the proxy's /readiness).
type Backend struct {
	Addr   string
	Health string
}

// LB is a running load balancer.
type LB struct {
	Addr     string
	backends []Backend
	healthy  []atomic.Bool
	next     atomic.Uint64
	ln       net.Listener
	wg       sync.WaitGroup
	stop     chan struct{}
	// Routed counts connections per backend.
	Routed []atomic.Int64
}

// Start listens on loopback and checks every backend's health every
// interval until the test ends. It waits for the first round of checks.
func Start(t testenv.T, interval time.Duration, backends ...Backend) *LB {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &LB{Addr: ln.Addr().String(), backends: backends, healthy: make([]atomic.Bool, len(backends)), Routed: make([]atomic.Int64, len(backends)),
		ln: ln, stop: make(chan struct{})}
	lb.check()
	lb.wg.Add(2)
	go func() {
		defer lb.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-lb.stop:
				return
			case <-tick.C:
				lb.check()
			}
		}
	}()
	go func() {
		defer lb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			lb.wg.Add(1)
			go func() { defer lb.wg.Done(); lb.forward(c) }()
		}
	}()
	t.Cleanup(func() {
		close(lb.stop)
		ln.Close()
		lb.wg.Wait()
	})
	return lb
}

var client = &http.Client{Timeout: 2 * time.Second}

func (lb *LB) check() {
	for i, b := range lb.backends {
		resp, err := client.Get(b.Health)
		ok := err == nil && resp.StatusCode == http.StatusOK
		if err == nil {
			resp.Body.Close()
		}
		lb.healthy[i].Store(ok)
	}
}

// Healthy reports whether the last check found backend i healthy.
func (lb *LB) Healthy(i int) bool { return lb.healthy[i].Load() }

func (lb *LB) forward(c net.Conn) {
	defer c.Close()
	n := len(lb.backends)
	start := int(lb.next.Add(1))
	for k := range n {
		i := (start + k) % n
		if !lb.healthy[i].Load() {
			continue
		}
		b, err := net.DialTimeout("tcp", lb.backends[i].Addr, 2*time.Second)
		if err != nil {
			continue
		}
		lb.Routed[i].Add(1)
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(b, c); _ = b.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, b); _ = c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
		for range 2 {
			select {
			case <-done:
			case <-lb.stop:
				// The test is over: cut what is left.
				c.Close()
				b.Close()
				<-done
			}
		}
		b.Close()
		return
	}
}
