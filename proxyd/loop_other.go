//go:build !linux

package proxyd

import "net"

// pair is a session's two sides in an event loop; only Linux has loops.
type pair struct{}

func (p *pair) close() {}

// relayInLoop is only available on Linux; elsewhere sessions are relayed
// with a goroutine per direction.
func (s *session) relayInLoop(client, backend net.Conn, toBackend, toClient []byte) bool {
	return false
}

// relayInLoopReusable is only available on Linux.
func (s *session) relayInLoopReusable(client, backend net.Conn, toBackend, toClient []byte, info *reuseInfo) bool {
	return false
}

// relayReused is only available on Linux, where loops park connections.
func (s *session) relayReused(client net.Conn, pc *parkedConn) bool { return false }

// endpoint and loop exist only on Linux.
type endpoint struct{}
type loop struct{}

// nbWrite is only called on a socket an event loop owns, which never
// happens without loops.
func nbWrite(int, []byte) (int, error) { return 0, errNotSocket }
