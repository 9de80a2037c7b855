//go:build linux

package proxyd

import (
	"syscall"
	"unsafe"
)

// The event loops' reads and writes are on non-blocking sockets: they
// return at once, so they are made as raw system calls, without telling the
// scheduler. A call it is told about lets the runtime's monitor hand the
// loop's processor to another thread when the call runs past 20 µs, which a
// loopback write that wakes the reader often does under load; the loop then
// waits to get a processor back, and the handing over costs a futex wake.

func nbRead(fd int, p []byte) (int, error)  { return nbIO(syscall.SYS_READ, fd, p) }
func nbWrite(fd int, p []byte) (int, error) { return nbIO(syscall.SYS_WRITE, fd, p) }

func nbIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// pollReady returns the events already waiting, without blocking.
func pollReady(epfd int, events []syscall.EpollEvent) int {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(r)
}
