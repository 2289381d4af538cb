// Package steerlab is the lab in which pnap's steering is judged: a
// customer namespace, pnapd, backbones through user-space emulators
// (bench/emu), and an "Internet" of TCP and UDP echo servers on many
// prefixes in the benchmark ranges. Customer flows measure what pnap
// gives them; scenarios shift the emulated paths while they run. The demo
// (bench/demo) and the scenario suite (bench/scenarios) are built on it.
package steerlab
