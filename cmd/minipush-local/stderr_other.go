//go:build !linux

package main

import (
	"errors"
	"os"
)

// redirectStderr is only implemented on Linux; elsewhere the logs stay on stderr.
func redirectStderr(*os.File) (*os.File, error) {
	return nil, errors.New("moving stderr to a file is implemented on Linux only")
}
