//go:build linux

package proxyd

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// BenchmarkRelaySmallMessages measures a choice the event loop makes: relay
// each message with read(2) and write(2) through one user-space buffer, or
// with splice(2) through a pipe so the bytes never enter user space. Each
// iteration is one message on its way client -> proxy -> server, the proxy's
// step done both ways on the same loopback sockets. Both take two system
// calls per message; splice saves a copy but pays for pipe buffers, which
// only wins for large messages. PostgreSQL and MySQL messages in steady state
// are small (a Bind/Execute or a row is tens to hundreds of bytes), and the
// proxy's side to RDS is TLS, which splice cannot carry without kernel TLS,
// so the loop reads and writes:
//
//	go test ./proxyd -run '^$' -bench RelaySmallMessages -benchmem
//
// On the 2-core CI machine: 64 B 6.6 µs read/write vs 7.0 µs splice, 4 KiB
// 6.4 vs 6.8 µs, 32 KiB 10.1 vs 8.5 µs.
func BenchmarkRelaySmallMessages(b *testing.B) {
	for _, size := range []int{64, 512, 4096, 32768} {
		msg := make([]byte, size)
		b.Run(sizeName(size)+"/read-write", func(b *testing.B) {
			in, out, client, server := relayPair(b)
			buf := make([]byte, 64<<10)
			relayBench(b, msg, client, server, func() {
				for got := 0; got < size; {
					n, err := syscall.Read(in, buf)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := syscall.Write(out, buf[:n]); err != nil {
						b.Fatal(err)
					}
					got += n
				}
			})
		})
		b.Run(sizeName(size)+"/splice", func(b *testing.B) {
			in, out, client, server := relayPair(b)
			var p [2]int
			if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { syscall.Close(p[0]); syscall.Close(p[1]) })
			relayBench(b, msg, client, server, func() {
				for got := 0; got < size; {
					n, err := syscall.Splice(in, nil, p[1], nil, 64<<10, 0)
					if err != nil {
						b.Fatal(err)
					}
					for left := n; left > 0; {
						m, err := syscall.Splice(p[0], nil, out, nil, int(left), 0)
						if err != nil {
							b.Fatal(err)
						}
						left -= m
					}
					got += int(n)
				}
			})
		})
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// relayBench sends msg from client, lets step move it across the proxy, and
// reads it at server, b.N times.
func relayBench(b *testing.B, msg []byte, client, server net.Conn, step func()) {
	got := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		step()
		for n := 0; n < len(got); {
			m, err := server.Read(got[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += m
		}
	}
}

// relayPair returns the proxy's two blocking file descriptors (the accepted
// client socket and the socket to the server) and the far ends.
func relayPair(b *testing.B) (in, out int, client, server net.Conn) {
	pair := func() (net.Conn, int) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		a, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		f, err := a.(*net.TCPConn).File() // a blocking duplicate
		if err != nil {
			b.Fatal(err)
		}
		a.Close()
		b.Cleanup(func() { c.Close(); f.Close() })
		return c, int(f.Fd())
	}
	client, in = pair()
	server, out = pair()
	return in, out, client, server
}
