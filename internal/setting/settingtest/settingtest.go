// Package settingtest checks a component's Options.Validate against a table
// of wrong settings, the one way the components' tests (probes, optimizer)
// hold their rules. It is for tests only: no non-test code imports it.
package settingtest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pnap-project/pnap/internal/setting"
)

// Case is one wrong setting: Set breaks the defaults, and Validate must
// refuse the result with an *setting.Error (wrapped or not) naming Keys,
// the error's message starting with Msg.
type Case[O any] struct {
	Set  func(o *O)
	Keys []string
	Msg  string
}

// Validate checks that defaults() is valid and that each case's change to
// fresh defaults is refused as the case says.
func Validate[O interface{ Validate() error }](t *testing.T, defaults func() O, cases []Case[O]) {
	t.Helper()
	if err := defaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range cases {
		o := defaults()
		c.Set(&o)
		err := o.Validate()
		var e *setting.Error
		if !errors.As(err, &e) || !slices.Equal(e.Keys, c.Keys) || !strings.HasPrefix(err.Error(), c.Msg) {
			t.Errorf("got %v (%#v), want keys %q and %q", err, e, c.Keys, c.Msg)
		}
	}
}
