// Package setting is how a component's Options say which setting is wrong.
// Validate returns an *Error naming the setting by its key in pnapd's
// configuration file, and the daemon, which alone knows the file, turns
// the key into the line that set it; the checks here word their messages
// as configs does, one line that says what to change. It knows nothing of
// files, TOML or any component, and must never import one: components
// import it.
package setting

import (
	"fmt"
	"math"
	"math/bits"
	"time"
)

// Error is a setting whose value a component refuses.
type Error struct {
	// Keys name the settings the broken rule involves, as the
	// configuration file spells them inside the component's table
	// ("timeout", "tcp_ports[2]"), the one to change first. A rule about
	// a combination lists each, so the message can point at one the file
	// sets. Settings not in the file are named by their Options field.
	Keys []string
	Msg  string // what is wrong and what to change
}

func (e *Error) Error() string { return e.Msg }

// Errorf makes an *Error about key. A rule about a combination makes its
// Error itself, listing the keys.
func Errorf(key, format string, args ...any) *Error {
	return &Error{Keys: []string{key}, Msg: fmt.Sprintf(format, args...)}
}

// First returns the first of errs that is not nil: the checks of a
// Validate, listed in the order the file documents them.
func First(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Int checks that key's value n lies in [lo, hi].
func Int(key string, n, lo, hi int) error {
	if n >= lo && n <= hi {
		return nil
	}
	return Errorf(key, "%s = %d is out of range; %s", key, n, between(lo, hi))
}

// PowerOfTwo checks that key's value n is a power of two in [lo, hi].
func PowerOfTwo(key string, n, lo, hi int) error {
	if err := Int(key, n, lo, hi); err != nil {
		return err
	}
	if n&(n-1) != 0 {
		below := 1 << (bits.Len(uint(n)) - 1)
		return Errorf(key, "%s = %d is not a power of two; use %d or %d", key, n, below, below*2)
	}
	return nil
}

// Number checks that key's value x is a finite number of 0 or more. NaN
// fails too: TOML can write it.
func Number(key string, x float64) error {
	if x >= 0 && !math.IsInf(x, 1) {
		return nil
	}
	return Errorf(key, "%s = %v is out of range; use a number of 0 or more", key, x)
}

// Positive checks that key's duration d is above zero: no setting means
// "never".
func Positive(key string, d time.Duration) error {
	if d > 0 {
		return nil
	}
	return Errorf(key, "%s = %q is not positive; use a duration greater than zero", key, d)
}

// between says which values are allowed.
func between(lo, hi int) string {
	if hi == math.MaxInt {
		return fmt.Sprintf("use %d or more", lo)
	}
	return fmt.Sprintf("use %d to %d", lo, hi)
}
