package faultproxy

import (
	"crypto/tls"
	"net"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// LDAP protocol operation tags (RFC 4511 4.2 ff.) the proxy counts.
const (
	opBind        = 0
	opSearch      = 3
	opExtended    = 23
	opExtendedRes = 24
)

// front is the proxy's own TLS endpoint: what clients see in place of the
// target's.
type front struct {
	cert     tls.Certificate
	startTLS bool
	result   int // the answer to StartTLS
}

// ServeLDAPS makes the proxy an LDAPS server with cert: connections
// accepted from now on complete a TLS handshake with the proxy, which
// forwards the plain LDAP inside to the target (a plain LDAP server). A
// client that refuses cert (unknown authority, expired, wrong name) never
// gets past the handshake, so nothing reaches the target.
func (p *Proxy) ServeLDAPS(cert tls.Certificate) {
	p.front.Store(&front{cert: cert})
}

// ServeStartTLS makes the proxy answer the StartTLS request that starts
// each connection accepted from now on with result (an LDAP result code):
// with 0 (success) it then completes a TLS handshake with cert and
// forwards the plain LDAP inside to the target; with any other code the
// connection goes on in plain text, as a server that refused StartTLS
// would leave it.
func (p *Proxy) ServeStartTLS(cert tls.Certificate, result int) {
	p.front.Store(&front{cert: cert, startTLS: true, result: result})
}

// Binds returns how many bind requests have reached the server side of the
// proxy: forwarded to the target, or swallowed by Blackhole. Only plain
// LDAP is read: plain connections, and what clients send inside the
// proxy's own TLS (ServeLDAPS, ServeStartTLS); a connection whose bytes
// stop looking like LDAP (TLS to the target) is not counted from there on.
func (p *Proxy) Binds() int64 { return p.binds.Load() }

// Searches returns how many search requests have reached the server side,
// read as Binds is.
func (p *Proxy) Searches() int64 { return p.searches.Load() }

// terminate runs the proxy's side of f on a new client connection and
// returns what to read and write LDAP on: the TLS connection, or client
// itself after a refused StartTLS.
func (p *Proxy) terminate(client net.Conn, f *front) (net.Conn, bool) {
	if f.startTLS {
		req, err := ber.ReadPacket(client)
		if err != nil || len(req.Children) < 2 {
			return nil, false
		}
		id, _ := req.Children[0].Value.(int64)
		resp := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
		resp.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
		op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opExtendedRes, nil, "Extended Response")
		op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(f.result), "resultCode"))
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
		op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
		resp.AppendChild(op)
		if _, err := client.Write(resp.Bytes()); err != nil {
			return nil, false
		}
		if f.result != 0 {
			return client, true
		}
	}
	tc := tls.Server(client, &tls.Config{Certificates: []tls.Certificate{f.cert}, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		return nil, false
	}
	return tc, true
}

// sniffer reads the LDAP requests in a client's byte stream and counts
// them by operation.
type sniffer struct {
	p   *Proxy
	buf []byte
	off bool // the stream is not (or no longer) plain LDAP
}

func (s *sniffer) Write(b []byte) (int, error) {
	s.feed(b)
	return len(b), nil
}

func (s *sniffer) feed(b []byte) {
	if s.off {
		return
	}
	s.buf = append(s.buf, b...)
	for {
		op, n := nextMessage(s.buf)
		switch {
		case n == 0:
			return
		case n < 0:
			s.off, s.buf = true, nil
			return
		}
		switch op {
		case opBind:
			s.p.binds.Add(1)
		case opSearch:
			s.p.searches.Add(1)
		}
		s.buf = s.buf[n:]
	}
}

// nextMessage reads the LDAPMessage at the start of b: its operation's tag
// and its length n; n is 0 when b holds only part of it, and negative when
// b does not start with an LDAPMessage.
func nextMessage(b []byte) (op, n int) {
	body, length, ok := header(b, 0x30)
	if !ok {
		return 0, -1
	}
	if body == 0 || len(b) < body+length {
		return 0, 0
	}
	idBody, idLength, ok := header(b[body:], 0x02) // messageID
	if !ok || idBody == 0 || body+idBody+idLength >= len(b) {
		return 0, -1
	}
	tag := b[body+idBody+idLength]
	if tag&0xc0 != 0x40 { // application class
		return 0, -1
	}
	return int(tag & 0x1f), body + length
}

// header reads a BER tag and length at the start of b: where the contents
// start (0 when b is too short to tell) and their length; ok is false when
// the tag is not want or the length is not one an LDAP client sends.
func header(b []byte, want byte) (body, length int, ok bool) {
	if len(b) < 2 {
		return 0, 0, len(b) == 0 || b[0] == want
	}
	if b[0] != want {
		return 0, 0, false
	}
	if b[1] < 0x80 {
		return 2, int(b[1]), true
	}
	n := int(b[1] & 0x7f)
	if n == 0 || n > 3 { // indefinite, or over 16 MiB
		return 0, 0, false
	}
	if len(b) < 2+n {
		return 0, 0, true
	}
	for _, c := range b[2 : 2+n] {
		length = length<<8 | int(c)
	}
	return 2 + n, length, true
}
