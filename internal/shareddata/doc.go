// Package shareddata finds the shared routing-table data (real Internet tables
// and MRT dumps) for tests and benchmarks. It is the one place that knows where
// that data lives: $PNAP_DATA, else ../shared/data beside the repository root.
// It never copies or downloads data.
package shareddata
