package sambatest

import (
	"os"
	"testing"
)

var shared Shared

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Stop()
	os.Exit(code)
}

func TestStart(t *testing.T) {
	d := shared.Get(t)
	t.Logf("provision+start+seed: %v", d.StartupTime)
}
