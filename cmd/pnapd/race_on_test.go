//go:build race

package main

// raceDetector: this test binary, and the pnapd it runs, are built with
// -race, which slows pnapd several times over.
const raceDetector = true
