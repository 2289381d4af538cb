package configs_test

import (
	"testing"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/configs/configtest"
)

// TestBroken loads every file in testdata/broken. Each starts with
// "# want: <substring of the error>" and may follow it with "# line: N";
// configtest.Broken says what the error must be.
func TestBroken(t *testing.T) {
	configtest.Broken(t, "testdata/broken", 15, func(file string) error {
		_, err := configs.Load(file)
		return err
	})
}
