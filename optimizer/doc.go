// Package optimizer turns measurements into a backbone per prefix and swaps
// the choices into the fib through its selection API only: one Step a
// second scores every measured prefix's holders (RTT statistic + loss
// penalty + cost), moves a prefix only on a clear win outside its
// hold-down, within MaxOverrides and the backbones' commit and capacity,
// and evacuates every prefix of a failed backbone within the Step that
// sees the failure. Pins, the operator's choices, are its too, so that the
// status API has one owner of them whether or not an optimizer runs. Its
// Options carry their own defaults and rules; the default backbone is the
// fib's (DefaultAmong), never a rule of its own.
// It never touches packets, never moves a pinned prefix, and never moves a
// prefix on a win smaller than the configured hysteresis, so two backbones
// within noise of each other never trade prefixes.
package optimizer
