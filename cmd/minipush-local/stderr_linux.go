package main

import (
	"os"
	"syscall"
)

// redirectStderr points the process's stderr (fd 2) at f and returns a file on the
// original stderr. Every function logs to os.Stderr through its own logger, built by
// the same wiring Lambda runs; moving the descriptor moves all of them without a knob
// in that wiring.
func redirectStderr(f *os.File) (*os.File, error) {
	orig, err := syscall.Dup(int(os.Stderr.Fd()))
	if err != nil {
		return nil, err
	}
	if err := syscall.Dup3(int(f.Fd()), int(os.Stderr.Fd()), 0); err != nil {
		_ = syscall.Close(orig)
		return nil, err
	}
	return os.NewFile(uintptr(orig), "/dev/stderr"), nil
}
