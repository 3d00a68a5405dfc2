package ldapauth_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
	"github.com/go-ldapauth/ldapauth/ldaptest"
)

// Servers that accept nothing (a connect never completes, as with a host
// down or a firewall dropping packets) before a healthy one, in every
// transport with two and three servers: the login is served by the
// healthy one through hedged connects, which alone saw a connection and
// the bind; Close ends the connects still waiting (no goroutine left).
func TestHedgedConnectUnreachable(t *testing.T) {
	srv := ldaptest.Start(t, ldaptest.DemoDirectory())
	cs := newCerts(t)
	for _, tr := range tlsModes {
		for _, n := range []int{2, 3} {
			t.Run(fmt.Sprintf("%s/%d servers", tr.name, n), func(t *testing.T) {
				var urls []string
				for range n - 1 {
					urls = append(urls, tr.scheme()+"://"+faultproxy.StartUnreachable(t).Addr())
				}
				healthy, u := tr.server(t, srv, cs.good)
				urls = append(urls, u)
				ignore := goleak.IgnoreCurrent()
				a := hedgeAuth(t, srv, tr, cs, urls)
				_, err := a.Authenticate(safetyNet(t), "alice", "alice-password")
				require.NoError(t, err, "served by the healthy server")
				assert.Equal(t, int64(1), healthy.Accepted())
				assert.Equal(t, int64(1), healthy.Binds())
				require.NoError(t, a.Close())
				goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("github.com/glauth/ldap.(*Server).Serve.func1"))
			})
		}
	}
}
