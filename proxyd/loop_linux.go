//go:build linux

package proxyd

import (
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
)

// Event loops relay established sessions the way pgbouncer does: one thread
// per core waits in epoll for every socket it owns, reads what is ready and
// writes it to the other side at once. No goroutine is woken per message and
// nothing is allocated per message; a session's goroutine only waits for its
// end. Output the kernel will not take yet is kept and flushed when the
// socket is writable; past highWater the other side is not read until it
// drains.
const (
	loopBuffer = 64 << 10
	highWater  = 1 << 20
)

type loop struct {
	epfd, wake int
	mu         sync.Mutex
	adds       []*pair
	closes     []*pair
	attaches   []attach
	releases   []*parkedConn // taken but not used: close them
	eps        map[int]*endpoint
	buf        []byte        // what is read from plain sockets and decrypted from TLS
	raw        []byte        // what is read from TLS sockets
	parked     []*parkedConn // idle server connections this loop keeps
}

type endpoint struct {
	fd      int
	sc      *switchConn
	tls     *tls.Conn // nil for a plain socket
	peer    *endpoint
	pair    *pair
	counter prometheus.Counter // bytes this endpoint sends on to its peer
	out     bool               // EPOLLOUT armed
	paused  bool               // not read while the peer is backed up
	closed  bool

	// A reusable PostgreSQL server connection between clients.
	state  int
	info   reuseInfo
	reset  *pgTracker
	parked *parkedConn
}

// Endpoint states: relaying for a client, being reset after one, or idle.
const (
	stateActive = iota
	stateResetting
	stateParked
)

// pair is a session's two sides in a loop: a is the client, b the server.
type pair struct {
	l      *loop
	srv    *Server
	a, b   *endpoint
	ended  func()     // the session's end work, started when the relay is over
	closed bool       // guarded by the loop thread
	track  *pgTracker // set when the server connection may be reused
}

// attach pairs a client with a parked server connection.
type attach struct {
	p      *pair
	parked *parkedConn
}

var (
	loopsOnce sync.Once
	loops     []*loop
	loopsErr  error
)

// eventLoop returns the loop for a session, starting them on first use.
// The loops are shared by every Server in the process.
func eventLoop(id uint32, want int) (*loop, error) {
	loopsOnce.Do(func() {
		n := want
		if n <= 0 {
			n = max(1, runtime.NumCPU()/4)
		}
		for range n {
			l, err := newLoop()
			if err != nil {
				loopsErr = err
				return
			}
			loops = append(loops, l)
			go l.run()
		}
	})
	if loopsErr != nil {
		return nil, loopsErr
	}
	return loops[int(id)%len(loops)], nil
}

func newLoop() (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, errno
	}
	wake := int(r)
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, wake, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(wake)}); err != nil {
		return nil, err
	}
	return &loop{epfd: epfd, wake: wake, eps: map[int]*endpoint{}, buf: make([]byte, loopBuffer), raw: make([]byte, loopBuffer)}, nil
}

func (l *loop) notify() {
	one := uint64(1)
	_, _ = syscall.Write(l.wake, (*[8]byte)(unsafe.Pointer(&one))[:])
}

func (l *loop) add(p *pair) {
	l.mu.Lock()
	l.adds = append(l.adds, p)
	l.mu.Unlock()
	l.notify()
}

// close asks the loop to end a session (shutdown, or the database went away
// under a test); the loop thread does it.
func (p *pair) close() {
	p.l.mu.Lock()
	p.l.closes = append(p.l.closes, p)
	p.l.mu.Unlock()
	p.l.notify()
}

func (l *loop) run() {
	events := make([]syscall.EpollEvent, 256)
	for {
		timeout := -1
		if len(l.parked) > 0 {
			timeout = 1000 // sweep idle server connections every second
		}
		// Under load something is usually ready: take it without a
		// blocking call (see nbRead); wait only when nothing is.
		n := pollReady(l.epfd, events)
		var err error
		if n == 0 {
			n, err = syscall.EpollWait(l.epfd, events, timeout)
		}
		if len(l.parked) > 0 {
			l.sweep(time.Now())
		}
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for i := range n {
			ev := events[i]
			fd := int(ev.Fd)
			if fd == l.wake {
				var b [8]byte
				_, _ = syscall.Read(l.wake, b[:])
				l.control()
				continue
			}
			ep := l.eps[fd]
			if ep == nil || ep.closed || ep.state == stateActive && ep.pair.closed {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 {
				l.flush(ep)
			}
			if ev.Events&(syscall.EPOLLIN|syscall.EPOLLHUP|syscall.EPOLLERR|syscall.EPOLLRDHUP) != 0 && !ep.closed {
				l.read(ep)
			}
		}
	}
}

// control registers new sessions and ends the ones asked to close.
func (l *loop) control() {
	l.mu.Lock()
	adds, closes, attaches, releases := l.adds, l.closes, l.attaches, l.releases
	l.adds, l.closes, l.attaches, l.releases = nil, nil, nil, nil
	l.mu.Unlock()
	for _, at := range attaches {
		l.attach(at)
	}
	for _, pc := range releases {
		l.closeEndpoint(pc.ep)
	}
	for _, p := range adds {
		if p.closed {
			continue // ended before it was registered
		}
		ok := true
		for _, ep := range []*endpoint{p.a, p.b} {
			l.eps[ep.fd] = ep
			if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, ep.fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(ep.fd)}); err != nil {
				ok = false
			}
		}
		if !ok {
			l.end(p)
			continue
		}
		// Bytes crypto/tls decrypted during the login, and output queued
		// before the hand-over, do not come with an event: serve them now.
		for _, ep := range []*endpoint{p.a, p.b} {
			if ep.tls != nil && !p.closed {
				l.drainTLS(ep)
			}
			if ep.sc.pending() > 0 && !p.closed {
				l.armOut(ep)
			}
		}
	}
	for _, p := range closes {
		l.end(p)
	}
}

func (l *loop) read(ep *endpoint) {
	// Plain bytes are read into buf; TLS records into raw, and decrypted
	// into buf.
	buf := l.buf
	if ep.tls != nil {
		buf = l.raw
	}
	n, err := nbRead(ep.fd, buf)
	switch {
	case n > 0 && ep.tls == nil:
		l.deliver(ep, buf[:n])
	case n > 0:
		ep.sc.lend(buf[:n])
		l.drainTLS(ep)
		ep.sc.keep()
	case err != syscall.EAGAIN && err != syscall.EINTR:
		l.fail(ep) // EOF or a socket error
	}
}

// fail ends whatever an endpoint is part of.
func (l *loop) fail(ep *endpoint) {
	switch ep.state {
	case stateActive:
		l.end(ep.pair)
	case stateParked:
		l.dropParked(ep)
	default:
		l.closeEndpoint(ep)
	}
}

// deliver routes bytes read from an endpoint by its state.
func (l *loop) deliver(ep *endpoint, data []byte) {
	switch ep.state {
	case stateResetting:
		l.resetting(ep, data)
		return
	case stateParked:
		// Servers do not speak to idle connections: something is wrong.
		l.dropParked(ep)
		return
	}
	p := ep.pair
	if t := p.track; t != nil {
		if ep == p.a {
			if i := t.fromClient(data); i >= 0 {
				if i > 0 {
					l.forward(ep, data[:i])
				}
				if !p.closed && t.idle() {
					l.recycle(p)
					return
				}
				data = data[i:]
			}
		} else {
			t.fromServer(data)
		}
	}
	l.forward(ep, data)
}

// drainTLS hands on everything crypto/tls can decrypt from what was read.
// A read may hold several records (a result set the server flushed in
// parts): they are decrypted one after another into the loop's buffer and
// passed on together, one write instead of one per record.
func (l *loop) drainTLS(ep *endpoint) {
	for !ep.closed && (ep.state != stateActive || !ep.pair.closed) {
		n := 0
		var err error
		for n < len(l.buf) && err == nil {
			var k int
			k, err = ep.tls.Read(l.buf[n:])
			n += k
		}
		if n > 0 {
			l.deliver(ep, l.buf[:n])
		}
		if err != nil {
			// crypto/tls hands back the transport's error value as it is.
			if err != errWouldBlock && !ep.closed {
				l.fail(ep)
			}
			return
		}
	}
}

// forward writes data from src to its peer.
func (l *loop) forward(src *endpoint, data []byte) {
	dst := src.peer
	src.counter.Add(float64(len(data)))
	var err error
	if dst.tls != nil {
		_, err = dst.tls.Write(data)
	} else {
		_, err = dst.sc.Write(data)
	}
	if err != nil {
		l.end(src.pair)
		return
	}
	if pending := dst.sc.pending(); pending > 0 {
		l.armOut(dst)
		if pending > highWater && !src.paused {
			src.paused = true
			l.interest(src)
		}
	}
}

func (l *loop) flush(ep *endpoint) {
	done, err := ep.sc.flush()
	if err != nil {
		l.fail(ep)
		return
	}
	if done {
		ep.out = false
		l.interest(ep)
		if ep.peer != nil && ep.peer.paused {
			ep.peer.paused = false
			l.interest(ep.peer)
		}
	}
}

func (l *loop) armOut(ep *endpoint) {
	if !ep.out {
		ep.out = true
		l.interest(ep)
	}
}

func (l *loop) interest(ep *endpoint) {
	var ev uint32 = syscall.EPOLLRDHUP
	if !ep.paused {
		ev |= syscall.EPOLLIN
	}
	if ep.out {
		ev |= syscall.EPOLLOUT
	}
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, ep.fd, &syscall.EpollEvent{Events: ev, Fd: int32(ep.fd)})
}

// end closes both sides of a session once and starts the session's end
// work (its goroutine returned when the loop took it).
func (l *loop) end(p *pair) {
	if p.closed {
		return
	}
	p.closed = true
	for _, ep := range []*endpoint{p.a, p.b} {
		l.closeEndpoint(ep)
	}
	go p.ended()
}

func (l *loop) closeEndpoint(ep *endpoint) {
	if ep.closed || ep.fd < 0 {
		return
	}
	ep.closed = true
	// Best effort: what is still queued (a final error message) goes out.
	_, _ = ep.sc.flush()
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, ep.fd, nil)
	if l.eps[ep.fd] == ep {
		delete(l.eps, ep.fd)
	}
	_ = ep.sc.Close()
	syscall.Close(ep.fd)
}

// recycle keeps a server connection whose client said Terminate while it
// was idle: the client's side closes, its session ends, and the server is
// reset with DISCARD ALL before it is parked.
func (l *loop) recycle(p *pair) {
	client, server := p.a, p.b
	l.closeEndpoint(client)
	p.closed = true
	go p.ended()
	server.state, server.peer, server.paused = stateResetting, nil, false
	server.reset = newPGTracker()
	server.reset.pending = 1
	var err error
	if server.tls != nil {
		_, err = server.tls.Write(discardAll)
	} else {
		_, err = server.sc.Write(discardAll)
	}
	if err != nil {
		l.closeEndpoint(server)
		return
	}
	l.interest(server)
	if server.sc.pending() > 0 {
		l.armOut(server)
	}
}

// resetting reads the answer to DISCARD ALL and parks the connection.
func (l *loop) resetting(ep *endpoint, data []byte) {
	t := ep.reset
	t.fromServer(data)
	if t.broken || t.errors > 0 {
		l.closeEndpoint(ep)
		return
	}
	if t.pending > 0 {
		return
	}
	if t.status != 'I' {
		l.closeEndpoint(ep)
		return
	}
	srv := ep.pair.srv
	pc := &parkedConn{info: ep.info, expires: time.Now().Add(time.Duration(srv.config().ReuseIdleTimeout)), ep: ep, l: l}
	if !srv.pool.put(pc, srv.config().MaxIdlePerKey) {
		l.closeEndpoint(ep)
		return
	}
	ep.state, ep.parked, ep.reset = stateParked, pc, nil
	l.parked = append(l.parked, pc)
	srv.metrics.idle.Inc()
}

// dropParked closes an idle server connection, unless a client has just
// taken it (then its session sees the failure).
func (l *loop) dropParked(ep *endpoint) {
	pc := ep.parked
	srv := ep.pair.srv
	if pc != nil && srv.pool.drop(pc) {
		srv.metrics.idle.Dec()
		l.closeEndpoint(ep)
	}
}

// sweep closes idle server connections that have waited too long.
func (l *loop) sweep(now time.Time) {
	keep := l.parked[:0]
	for _, pc := range l.parked {
		switch {
		case pc.ep.closed || pc.ep.state != stateParked:
		case now.After(pc.expires):
			l.dropParked(pc.ep)
		default:
			keep = append(keep, pc)
		}
	}
	l.parked = keep
}

// attach gives a parked server connection to a new client.
func (l *loop) attach(at attach) {
	p, server := at.p, at.parked.ep
	client := p.a
	l.eps[client.fd] = client
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, client.fd, &syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(client.fd)}); err != nil || server.closed {
		p.b = server
		l.end(p)
		return
	}
	server.state, server.parked = stateActive, nil
	server.peer, client.peer = client, server
	server.pair, p.b = p, server
	l.interest(server)
}

// relayInLoop hands a logged-in session to an event loop. It returns true
// once the loop has it (the caller's goroutine then returns, holding
// nothing; the loop runs the session's atEnd work when the relay is over)
// or the session has ended, and false when the loop cannot take it (then
// the caller relays with goroutines).
func (s *session) relayInLoop(client, backend net.Conn, toBackend, toClient []byte) bool {
	return s.relayInLoopReusable(client, backend, toBackend, toClient, nil)
}

// relayInLoopReusable is relayInLoop for a PostgreSQL session whose server
// connection may be kept for the next client (info non-nil).
func (s *session) relayInLoopReusable(client, backend net.Conn, toBackend, toClient []byte, info *reuseInfo) bool {
	a, ok1 := loopEndpoint(client)
	b, ok2 := loopEndpoint(backend)
	if !ok1 || !ok2 {
		return false
	}
	l, err := eventLoop(s.id, s.srv.config().EventLoops)
	if err != nil {
		return false
	}
	// Whatever the login left to write goes first, while still blocking.
	if len(toClient) > 0 {
		if _, err := client.Write(toClient); err != nil {
			return true
		}
	}
	if len(toBackend) > 0 {
		if _, err := backend.Write(toBackend); err != nil {
			return true
		}
	}
	db := s.dbLabel()
	a.counter = s.countBytes(db, "to_database")
	b.counter = s.countBytes(db, "to_client")
	p := &pair{l: l, srv: s.srv, a: a, b: b, ended: s.end}
	a.peer, b.peer, a.pair, b.pair = b, a, p, p
	if info != nil {
		p.track, b.info = newPGTracker(), *info
	}
	// The hand-over and session.close exclude each other: either the
	// session is closed first (nothing to hand over), or close finds the
	// pair and asks the loop.
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return true
	}
	var err1, err2 error
	if a.fd, err1 = a.sc.takeOver(); err1 == nil {
		b.fd, err2 = b.sc.takeOver()
	}
	if err1 != nil || err2 != nil {
		s.mu.Unlock()
		if a.fd >= 0 {
			syscall.Close(a.fd)
		}
		return true // the sockets are half taken: the session ends
	}
	s.loopPair = p
	s.mu.Unlock()
	l.add(p)
	return true
}

// loopEndpoint finds the switchConn under a connection, and its TLS layer.
func loopEndpoint(c net.Conn) (*endpoint, bool) {
	switch t := c.(type) {
	case *switchConn:
		return &endpoint{fd: -1, sc: t}, true
	case *tls.Conn:
		if sc, ok := t.NetConn().(*switchConn); ok {
			return &endpoint{fd: -1, sc: sc, tls: t}, true
		}
	}
	return nil, false
}

// relayReused gives the client a parked server connection of its key: the
// client gets the parameters the server reported at its login, a cancel key
// of its own, and ReadyForQuery; the loop that keeps the connection relays.
func (s *session) relayReused(client net.Conn, pc *parkedConn) bool {
	a, ok := loopEndpoint(client)
	if !ok {
		return false
	}
	pid, secret := s.srv.cancels.add(cancelTarget{db: s.db, pid: pc.info.pid, secret: pc.info.secret}, len(pc.info.secret))
	s.atEnd(func() { s.srv.cancels.remove(pid, secret) })
	greeting := append(append([]byte(nil), pc.info.negotiate...), pgAuthOK()...)
	greeting = append(greeting, pc.info.params...)
	greeting = append(greeting, pgKeyData(pid, secret)...)
	greeting = append(greeting, 'Z', 0, 0, 0, 5, 'I')
	release := func() {
		pc.l.mu.Lock()
		pc.l.releases = append(pc.l.releases, pc)
		pc.l.mu.Unlock()
		pc.l.notify()
	}
	if _, err := client.Write(greeting); err != nil {
		release()
		return true
	}
	a.counter = s.countBytes(s.dbLabel(), "to_database")
	pc.ep.counter = s.countBytes(s.dbLabel(), "to_client")
	p := &pair{l: pc.l, srv: s.srv, a: a, b: pc.ep, ended: s.end, track: newPGTracker()}
	a.pair = p
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		release()
		return true
	}
	fd, err := a.sc.takeOver()
	if err != nil {
		s.mu.Unlock()
		release()
		return true
	}
	a.fd = fd
	s.loopPair = p
	s.mu.Unlock()
	pc.l.mu.Lock()
	pc.l.attaches = append(pc.l.attaches, attach{p: p, parked: pc})
	pc.l.mu.Unlock()
	pc.l.notify()
	return true
}
