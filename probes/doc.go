// Package probes measures latency and loss per prefix and backbone: passive
// samples handed over by the forwarder, active probes out of every backbone,
// and the measurement store the optimizer reads. It never slows forwarding.
// (Being built: see the issues.)
package probes
