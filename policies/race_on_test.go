//go:build race

package policies

// raceEnabled is true under the race detector, which slows the property
// tests tenfold: they run fewer cases there, and all of them in make property.
const raceEnabled = true
