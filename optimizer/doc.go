// Package optimizer turns measurements into a backbone per prefix and swaps
// the choices into the fib through its selection API only. It never touches
// packets. (Being built: see the issues.)
package optimizer
