package proxyd

import (
	"bytes"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// switchConn is the transport under every session's connections. During the
// login it is the accepted or dialed net.Conn, used with blocking reads and
// deadlines like any other. When the session is handed to an event loop it
// takes the socket over (a duplicate descriptor, the original closed so Go's
// netpoller lets go of it) and turns non-blocking: Read returns what the
// loop has read, or errWouldBlock; Write keeps what the kernel will not take
// yet and the loop flushes it. A tls.Conn on top carries on unaware, because
// crypto/tls keeps a connection usable after a temporary read error.
//
// Once owned, only the loop's thread reads, writes and flushes, so the
// buffers need no lock; Close may come from anywhere and only sets a flag.
type switchConn struct {
	net.Conn

	owned  atomic.Bool
	closed atomic.Bool
	fd     int // the loop's descriptor, once owned
	in     []byte
	out    []byte
}

func newSwitchConn(c net.Conn) *switchConn { return &switchConn{Conn: c, fd: -1} }

// wouldBlockError is a temporary error: tls.Conn keeps its state and returns
// it from Read, so the loop can call Read again when bytes arrive.
type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "would block" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

var (
	errWouldBlock error = wouldBlockError{}
	errNotSocket        = errors.New("not a socket")
)

func (c *switchConn) Read(p []byte) (int, error) {
	if !c.owned.Load() {
		return c.Conn.Read(p)
	}
	if len(c.in) == 0 {
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, errWouldBlock
	}
	n := copy(p, c.in)
	c.in = c.in[n:]
	if len(c.in) == 0 {
		c.in = nil
	}
	return n, nil
}

func (c *switchConn) Write(p []byte) (int, error) {
	if !c.owned.Load() {
		return c.Conn.Write(p)
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	total := len(p)
	if len(c.out) == 0 {
		// Straight to the kernel; keep only what it does not take.
		n, err := nbWrite(c.fd, p)
		if n < 0 {
			n = 0
		}
		if err != nil && err != syscall.EAGAIN && err != syscall.EINTR {
			c.closed.Store(true)
			return 0, err
		}
		p = p[n:]
	}
	if len(p) > 0 {
		c.out = append(c.out, p...)
	}
	return total, nil
}

// flush writes pending output; it reports whether everything went out.
func (c *switchConn) flush() (bool, error) {
	for len(c.out) > 0 {
		n, err := nbWrite(c.fd, c.out)
		if n > 0 {
			c.out = c.out[n:]
		}
		if err == syscall.EAGAIN {
			return false, nil
		}
		if err != nil && err != syscall.EINTR {
			c.closed.Store(true)
			return false, err
		}
	}
	c.out = nil
	return true, nil
}

func (c *switchConn) pending() int { return len(c.out) }

// takeOver moves the socket to a duplicate descriptor the loop owns.
func (c *switchConn) takeOver() (int, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return -1, errNotSocket
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) { fd, dupErr = syscall.Dup(int(s)) }); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, dupErr
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	// Closing Go's descriptor takes it out of the runtime's netpoller; the
	// socket lives on in the duplicate.
	_ = c.Conn.SetDeadline(time.Time{})
	_ = c.Conn.Close()
	c.fd = fd
	c.owned.Store(true)
	return fd, nil
}

// lend gives Read bytes the loop read from the socket, in the loop's own
// buffer: no copy, nothing allocated. The loop calls keep before it reads
// into that buffer again.
func (c *switchConn) lend(p []byte) {
	if len(c.in) == 0 {
		c.in = p
		return
	}
	c.in = append(c.in, p...) // after what keep copied
}

// keep copies what Read has not taken of lent bytes out of the loop's
// buffer. crypto/tls takes everything it is given when the loop drains it,
// so this is rare.
func (c *switchConn) keep() {
	if len(c.in) > 0 {
		c.in = bytes.Clone(c.in)
	}
}

// Close closes the socket, whoever owns it; a loop closes its descriptor
// when it drops the session.
func (c *switchConn) Close() error {
	c.closed.Store(true)
	if c.owned.Load() {
		return nil
	}
	return c.Conn.Close()
}

func (c *switchConn) SetDeadline(t time.Time) error {
	if c.owned.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *switchConn) SetReadDeadline(t time.Time) error {
	if c.owned.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *switchConn) SetWriteDeadline(t time.Time) error {
	if c.owned.Load() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}
