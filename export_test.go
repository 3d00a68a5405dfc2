package ldapauth

import (
	"reflect"
	"time"
)

// SetClock replaces the clock the back-off and the pool's idle timeout
// read, so tests move time instead of sleeping. With a clock other than
// time.Now, logins start no probe: servers marked down are probed only by
// ProbeNow, so a test knows when probes happen.
func SetClock(a *Authenticator, now func() time.Time) {
	a.now = now
	a.probe.manual = reflect.ValueOf(now).Pointer() != reflect.ValueOf(time.Now).Pointer()
}

// WaitAbandoned waits until the service-account searches abandoned by
// failed logins have ended and put their connections back.
func WaitAbandoned(a *Authenticator) { a.background.Wait() }

// ProbeNow probes at once every server marked down whose back-off is over
// (by the Authenticator's clock), as a login would start it, and returns
// when those probes have ended.
func ProbeNow(a *Authenticator) { a.probeRound() }
