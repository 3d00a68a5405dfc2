package ldapauth

import "time"

// SetClock replaces the clock the back-off and the pool's idle timeout
// read, so tests move time instead of sleeping.
func SetClock(a *Authenticator, now func() time.Time) { a.now = now }

// WaitAbandoned waits until the service-account searches abandoned by
// failed logins have ended and put their connections back.
func WaitAbandoned(a *Authenticator) { a.background.Wait() }
