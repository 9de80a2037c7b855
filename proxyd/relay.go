package proxyd

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// relayBufferSize holds a whole TLS record's plaintext, so each read from
// the database returns at most one record's worth and nothing is split.
const relayBufferSize = 16 << 10

var bufferPool = sync.Pool{New: func() any { b := make([]byte, relayBufferSize); return &b }}

// relay copies between the client and the database until either side
// ends. Bytes read during the login that belong to the session are sent
// first.
func (s *session) relay(client, backend net.Conn, toBackend, toClient []byte) {
	if !s.srv.config().NoEventLoop && s.relayInLoop(client, backend, toBackend, toClient) {
		return
	}
	db := s.dbLabel()
	up := s.countBytes(db, "to_database")
	down := s.countBytes(db, "to_client")
	if len(toClient) > 0 {
		if _, err := client.Write(toClient); err != nil {
			return
		}
	}
	if len(toBackend) > 0 {
		if _, err := backend.Write(toBackend); err != nil {
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pump(client, backend, down)
		s.close()
	}()
	pump(backend, client, up)
	s.close()
	<-done
}

// pump copies src to dst until either fails.
func pump(dst, src net.Conn, counter prometheus.Counter) {
	bp := bufferPool.Get().(*[]byte)
	defer bufferPool.Put(bp)
	buf := *bp
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			counter.Add(float64(n))
		}
		if err != nil {
			return
		}
	}
}

// sessionCounter counts relayed bytes in the metric and in the session,
// for the audit trail's session end.
type sessionCounter struct {
	prometheus.Counter
	n *atomic.Int64
}

func (c sessionCounter) Add(v float64) {
	c.Counter.Add(v)
	c.n.Add(int64(v))
}

// countBytes is the byte counter of one direction of the session.
func (s *session) countBytes(db, direction string) prometheus.Counter {
	n := &s.bytesToDB
	if direction == "to_client" {
		n = &s.bytesToClient
	}
	return sessionCounter{Counter: s.srv.metrics.bytes.WithLabelValues(db, direction), n: n}
}
