package proxyd

import (
	"encoding/binary"
	"sort"
	"strings"
	"sync"
	"time"
)

// Reusing PostgreSQL server connections (reuse_connections): when a client
// says Terminate while its server connection is idle, the proxy resets the
// connection with DISCARD ALL and keeps it for the next client of the same
// database, role and startup parameters, as pgbouncer's session pooling
// does. New connections then cost no server fork, no TLS handshake and no
// token. Access is still checked for every client; only the server side is
// reused.

// pgTracker follows the message framing of a session's two directions, by
// headers alone, to know when the server is idle and to find the client's
// Terminate.
type pgTracker struct {
	client, server pgFramer
	// pending counts Query, Sync and FunctionCall messages not yet answered
	// by ReadyForQuery; dirty is set by any client message after the last
	// answer; status is the last ReadyForQuery's transaction status.
	pending int
	dirty   bool
	status  byte
	errors  int  // ErrorResponses from the server (while resetting)
	broken  bool // framing lost: never reuse
}

type pgFramer struct {
	need   int // body bytes left in the current message
	hdr    [5]byte
	have   int  // header bytes gathered so far
	status bool // the next body byte is a ReadyForQuery status
}

// header gathers a message header from data at *i, which may arrive split
// over reads; ok once all five bytes are in, with the type and the body
// length (negative when the length field is malformed).
func (f *pgFramer) header(data []byte, i *int) (typ byte, n int, ok bool) {
	take := min(5-f.have, len(data)-*i)
	copy(f.hdr[f.have:], data[*i:*i+take])
	f.have += take
	*i += take
	if f.have < 5 {
		return 0, 0, false
	}
	f.have = 0
	return f.hdr[0], int(binary.BigEndian.Uint32(f.hdr[1:])) - 4, true
}

func newPGTracker() *pgTracker { return &pgTracker{status: 'I'} }

// idle reports whether the server has answered everything and is outside a
// transaction: the only state in which its connection can be handed on.
func (t *pgTracker) idle() bool {
	return !t.broken && t.pending == 0 && !t.dirty && t.status == 'I'
}

// fromClient follows client bytes; it returns the offset at which a
// Terminate message starts, or -1.
func (t *pgTracker) fromClient(data []byte) int {
	f := &t.client
	for i := 0; i < len(data); {
		if f.need > 0 {
			skip := min(f.need, len(data)-i)
			f.need -= skip
			i += skip
			continue
		}
		start := i - f.have
		typ, n, ok := f.header(data, &i)
		if !ok {
			break
		}
		if n < 0 {
			t.broken = true
			return -1
		}
		if typ == 'X' && n == 0 {
			if start < 0 {
				// The header began in bytes already sent on: too late.
				t.broken = true
				return -1
			}
			return start
		}
		t.dirty = true
		switch typ {
		case 'Q', 'S', 'F':
			t.pending++
		}
		f.need = n
	}
	return -1
}

// fromServer follows server bytes, counting ReadyForQuery answers.
func (t *pgTracker) fromServer(data []byte) {
	f := &t.server
	for i := 0; i < len(data); {
		if f.need > 0 {
			if f.status {
				f.status = false
				t.status = data[i]
				t.pending--
				if t.pending <= 0 {
					t.pending = 0
					t.dirty = false
				}
			}
			skip := min(f.need, len(data)-i)
			f.need -= skip
			i += skip
			continue
		}
		typ, n, ok := f.header(data, &i)
		if !ok {
			break
		}
		if n < 0 {
			t.broken = true
			return
		}
		f.status = typ == 'Z' && n == 1
		if typ == 'E' {
			t.errors++
		}
		f.need = n
	}
}

// discardAll is the Query message that resets a server connection.
var discardAll = func() []byte {
	q := "DISCARD ALL\x00"
	b := []byte{'Q', 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(q)))
	return append(b, q...)
}()

// reuseInfo is what a reusable server connection carries to its next
// client: the key it serves, the parameters to replay, its cancel key.
type reuseInfo struct {
	key       string
	params    []byte // ParameterStatus messages from the login
	negotiate []byte // the server's NegotiateProtocolVersion, if it sent one
	pid       uint32
	secret    []byte
}

// reuseKey is the pool key of a server connection: the database, the role
// it logged in as, and every startup parameter.
func reuseKey(db *Database, params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(db.Name + "\x00" + db.AssumeRoleARN + "\x00")
	for _, k := range keys {
		b.WriteString(k + "=" + params[k] + "\x00")
	}
	return b.String()
}

// connPool holds idle server connections by key.
type connPool struct {
	mu   sync.Mutex
	idle map[string][]*parkedConn
}

// parkedConn is an idle server connection a loop keeps.
type parkedConn struct {
	info    reuseInfo
	expires time.Time
	ep      *endpoint
	l       *loop
	taken   bool // guarded by the pool's mutex
}

func (p *connPool) put(c *parkedConn, maxPerKey int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.idle == nil {
		p.idle = map[string][]*parkedConn{}
	}
	if len(p.idle[c.info.key]) >= maxPerKey {
		return false
	}
	p.idle[c.info.key] = append(p.idle[c.info.key], c)
	return true
}

// take hands out the most recently parked connection for a key.
func (p *connPool) take(key string, now time.Time) *parkedConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		c := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Before(c.expires) {
			p.idle[key] = list
			c.taken = true
			return c
		}
	}
	delete(p.idle, key)
	return nil
}

// drop removes a connection the loop is closing; false when a session has
// taken it already.
func (p *connPool) drop(c *parkedConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.taken {
		return false
	}
	list := p.idle[c.info.key]
	for i, x := range list {
		if x == c {
			p.idle[c.info.key] = append(list[:i], list[i+1:]...)
			break
		}
	}
	c.taken = true
	return true
}

func (p *connPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}
