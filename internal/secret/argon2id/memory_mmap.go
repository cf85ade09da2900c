//go:build linux || darwin || freebsd || netbsd || openbsd

package argon2id

import (
	"syscall"
	"unsafe"
)

// allocBlocks maps n blocks of anonymous memory outside the Go heap. A kept
// work area on the heap would count as live heap and let the collector wait
// for that much garbage again before each cycle (38 MiB of work areas meant
// ~90 MiB of heap); mapped memory costs its size and nothing more.
func allocBlocks(n uint32) ([]block, bool) {
	b, err := syscall.Mmap(-1, 0, int(n)*blockLength*8, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON)
	if err != nil {
		return make([]block, n), false
	}
	return unsafe.Slice((*block)(unsafe.Pointer(unsafe.SliceData(b))), n), true
}

func freeBlocks(blocks []block) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(blocks))), len(blocks)*blockLength*8)
	_ = syscall.Munmap(b)
}
