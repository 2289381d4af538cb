// Command demo is pnap's self-contained lab demo (`make demo`, or as root
// `go run ./bench/demo [-plot FILE]`): a customer namespace, pnapd, three
// backbones through user-space emulators (20, 45 and 80 ms), and an
// "Internet" of TCP and UDP echo servers on many prefixes in the benchmark
// ranges. Mid-run the emulated delays shift; pnapd's probes notice and its
// optimizer re-steers. The demo prints a line a second, a summary and a
// plot, and removes its lab when it ends and on Ctrl-C. The lab is
// bench/steerlab's, whose tests hold the optimizer's end-to-end test
// (TestResteer), the same lab, shorter.
package main
