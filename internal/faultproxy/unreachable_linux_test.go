package faultproxy_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
)

// A connect to an Unreachable neither completes nor is refused: it ends
// only when the client gives up.
func TestUnreachableNeverConnects(t *testing.T) {
	u := faultproxy.StartUnreachable(t)
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel) // the client giving up
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", u.Addr())
		if c != nil {
			c.Close()
		}
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.Canceled), "waiting until the client gave up, not refused: %v", err)
	}
}

// A connection that Hold keeps goes on once the mode changes, and counts
// as a stall; Open counts it until it closes.
func TestHoldThenPass(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	p.SetMode(faultproxy.Hold)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	require.NoError(t, p.WaitStalled(context.Background(), 1))
	assert.Equal(t, int64(1), p.Open())
	p.SetMode(faultproxy.Pass)
	require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = c.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	c.Close()
	require.Eventually(t, func() bool { return p.Open() == 0 }, time.Minute, 2*time.Millisecond)
}
