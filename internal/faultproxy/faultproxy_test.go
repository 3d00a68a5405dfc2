package faultproxy_test

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/go-ldapauth/ldapauth/internal/faultproxy"
)

// echo starts a server that sends back what it reads.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func roundTrip(t *testing.T, addr string, msg string) (string, error) {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

func TestPass(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	got, err := roundTrip(t, p.Addr(), "hello")
	require.NoError(t, err)
	assert.Equal(t, "hello", got)
	assert.Equal(t, int64(1), p.Accepted())
}

func TestBlackholeNeverAnswers(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	p.SetMode(faultproxy.Blackhole)
	_, err := roundTrip(t, p.Addr(), "hello")
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout())
}

func TestCutAfter(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	p.CutAfter(3)
	got, err := roundTrip(t, p.Addr(), "hello")
	require.Error(t, err)
	assert.Equal(t, "hel", got)
}

func TestCloseConnections(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
	buf := make([]byte, 1)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	p.CloseConnections()
	require.NoError(t, c.SetDeadline(time.Now().Add(2*time.Second)))
	_, err = c.Read(buf)
	require.Error(t, err)
	assert.False(t, isTimeout(err), "the connection was closed, not left hanging")
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestStallAfterHoldsTheAnswer(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	p.StallAfter(2)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf[:2])
	require.NoError(t, err)
	assert.Equal(t, "he", string(buf[:2]), "the first bytes pass")
	require.Eventually(t, func() bool { return p.Stalled() == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = c.Read(buf)
	assert.True(t, isTimeout(err), "the rest is held: %v", err)

	p.StallAfter(-1)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(c, buf[:3])
	require.NoError(t, err)
	assert.Equal(t, "llo", string(buf[:3]), "released when stalling is turned off")
	assert.Equal(t, int64(5), p.ServerBytes())
}

func TestForgetResetsOnNextSend(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Write([]byte("a"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)

	p.Forget()
	_, err = c.Write([]byte("b")) // the kernel accepts it; the reset follows
	require.NoError(t, err)
	_, err = c.Read(make([]byte, 1))
	require.Error(t, err)
	assert.False(t, isTimeout(err), "a reset, not silence: %v", err)

	got, err := roundTrip(t, p.Addr(), "new")
	require.NoError(t, err, "new connections are not forgotten")
	assert.Equal(t, "new", got)
}

// WaitStalled returns once a connection holds the answer back, and
// otherwise reports that nothing stalled: the caller's ctx ended, or the
// proxy closed.
func TestWaitStalled(t *testing.T) {
	p := faultproxy.Start(t, echo(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, p.WaitStalled(ctx, 1), context.DeadlineExceeded, "nothing stalled")

	p.StallAfter(0)
	waited := make(chan error, 1)
	go func() { waited <- p.WaitStalled(context.Background(), 1) }()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, <-waited)
	assert.Equal(t, int64(1), p.Stalled())
	require.NoError(t, p.WaitStalled(context.Background(), 1), "a stall already counted")

	go func() { waited <- p.WaitStalled(context.Background(), 2) }()
	p.Close()
	require.ErrorIs(t, <-waited, faultproxy.ErrClosed)
}
