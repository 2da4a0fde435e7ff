// Package badinput holds the bad-input suite (issue #8): every public route of
// template.yaml, started whole through the local runner, fed malformed, oversized,
// wrongly typed, forged and replayed requests over real HTTP, each answer checked and
// every table read back. It has no non-test code.
package badinput
