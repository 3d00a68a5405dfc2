package slapdtest

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// entry is one record of a content LDIF file, attributes in file order.
type entry struct {
	dn    string
	attrs []attr
}

type attr struct {
	name  string
	value string
}

func (e *entry) has(name, value string) bool {
	for _, a := range e.attrs {
		if strings.EqualFold(a.name, name) && strings.EqualFold(a.value, value) {
			return true
		}
	}
	return false
}

// parseLDIF reads content LDIF (RFC 2849) as far as the seed needs it:
// comments, folded lines, "attr: value" and "attr:: base64". Change records
// and URL values ("attr:< file") are refused.
func parseLDIF(r io.Reader) ([]*entry, error) {
	var (
		entries []*entry
		lines   []string // logical lines of the current record
		lineNo  int
	)
	flush := func() error {
		if len(lines) == 0 {
			return nil
		}
		defer func() { lines = lines[:0] }()
		var e *entry
		for _, l := range lines {
			name, value, err := parseLDIFLine(l)
			if err != nil {
				return fmt.Errorf("line %d: %w", lineNo, err)
			}
			switch {
			case e == nil && strings.EqualFold(name, "version"):
				continue
			case e == nil && strings.EqualFold(name, "dn"):
				e = &entry{dn: value}
			case e == nil:
				return fmt.Errorf("line %d: record does not start with dn", lineNo)
			case strings.EqualFold(name, "changetype"):
				return fmt.Errorf("line %d: change records are not supported", lineNo)
			default:
				e.attrs = append(e.attrs, attr{name, value})
			}
		}
		if e != nil {
			entries = append(entries, e)
		}
		return nil
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	inComment := false // a folded line continues a comment too
	for sc.Scan() {
		lineNo++
		l := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case l == "":
			inComment = false
			if err := flush(); err != nil {
				return nil, err
			}
		case strings.HasPrefix(l, "#"):
			inComment = true
		case strings.HasPrefix(l, " "):
			if inComment {
				continue
			}
			if len(lines) == 0 {
				return nil, fmt.Errorf("line %d: continuation without a line to continue", lineNo)
			}
			lines[len(lines)-1] += l[1:]
		default:
			inComment = false
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return entries, nil
}

func parseLDIFLine(l string) (name, value string, err error) {
	name, rest, ok := strings.Cut(l, ":")
	if !ok {
		return "", "", fmt.Errorf("no colon in %q", l)
	}
	switch {
	case strings.HasPrefix(rest, ":"):
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest[1:]))
		if err != nil {
			return "", "", fmt.Errorf("attribute %s: %w", name, err)
		}
		return name, string(b), nil
	case strings.HasPrefix(rest, "<"):
		return "", "", fmt.Errorf("attribute %s: URL values are not supported", name)
	default:
		return name, strings.TrimLeft(rest, " "), nil
	}
}

// ldifWriter writes content LDIF; values that are not SAFE-STRINGs are
// base64-encoded.
type ldifWriter struct {
	w   *bufio.Writer
	err error
}

func (lw *ldifWriter) line(name, value string) {
	if lw.err != nil {
		return
	}
	if safeString(value) {
		_, lw.err = fmt.Fprintf(lw.w, "%s: %s\n", name, value)
	} else {
		_, lw.err = fmt.Fprintf(lw.w, "%s:: %s\n", name, base64.StdEncoding.EncodeToString([]byte(value)))
	}
}

func (lw *ldifWriter) end() {
	if lw.err == nil {
		lw.err = lw.w.WriteByte('\n')
	}
}

func (lw *ldifWriter) entry(e *entry) {
	lw.line("dn", e.dn)
	for _, a := range e.attrs {
		lw.line(a.name, a.value)
	}
	lw.end()
}

// safeString reports whether v may be written as "attr: v" (RFC 2849).
func safeString(v string) bool {
	if v == "" {
		return true
	}
	if v[0] == ' ' || v[0] == ':' || v[0] == '<' || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == 0 || c == '\n' || c == '\r' || c > 0x7e {
			return false
		}
	}
	return true
}

// dnKey is the form in which DNs are compared when the helper computes
// memberOf: parsed, attribute types folded, values escaped alike.
func dnKey(dn string) (string, error) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return "", err
	}
	return strings.ToLower(parsed.String()), nil
}

// prepareSeed does to the seed entries what the live overlays would have
// done had they been added over LDAP: it hashes cleartext userPassword
// values ({SSHA}, as ppolicy_hash_cleartext does) and writes on every
// member of a groupOfNames the memberOf value the memberof overlay keeps.
// extraMembers lists, per group DN key, DNs to add as members first
// (generated users); their memberOf values are written by the generator.
func prepareSeed(entries []*entry, extraMembers map[string][]string) error {
	byKey := make(map[string]*entry, len(entries))
	for _, e := range entries {
		k, err := dnKey(e.dn)
		if err != nil {
			return fmt.Errorf("dn %q: %w", e.dn, err)
		}
		byKey[k] = e
		for i, a := range e.attrs {
			if strings.EqualFold(a.name, "userPassword") && !strings.HasPrefix(a.value, "{") {
				e.attrs[i].value = hashSSHA(a.value)
			}
		}
	}
	for _, g := range entries {
		if !g.has("objectClass", "groupOfNames") {
			continue
		}
		for _, a := range g.attrs {
			if !strings.EqualFold(a.name, "member") {
				continue
			}
			k, err := dnKey(a.value)
			if err != nil {
				return fmt.Errorf("group %q: member %q: %w", g.dn, a.value, err)
			}
			if m, ok := byKey[k]; ok && !m.has("memberOf", g.dn) {
				m.attrs = append(m.attrs, attr{"memberOf", g.dn})
			}
		}
	}
	var missing []error
	for k, members := range extraMembers {
		g, ok := byKey[k]
		if !ok {
			missing = append(missing, fmt.Errorf("group %q is not in the seed", k))
			continue
		}
		for _, m := range members {
			g.attrs = append(g.attrs, attr{"member", m})
		}
	}
	return errors.Join(missing...)
}

// hashSSHA returns the {SSHA} form of password with a random 8-byte salt,
// the scheme slapd uses by default (password-hash).
func hashSSHA(password string) string {
	salt := make([]byte, 8)
	_, _ = rand.Read(salt) // never fails (crypto/rand)
	sum := sha1.Sum(append([]byte(password), salt...))
	return "{SSHA}" + base64.StdEncoding.EncodeToString(append(sum[:], salt...))
}
