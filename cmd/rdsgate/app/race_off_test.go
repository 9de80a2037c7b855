//go:build !race

package app

// raceEnabled is true under the race detector: the slowest end-to-end tests
// run a smaller fleet there.
const raceEnabled = false
