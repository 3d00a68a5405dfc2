package main

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/term"

	"github.com/go-ldapauth/ldapauth"
)

// progress shows how far a sync has come: on a terminal, one line redrawn
// in place (a counter while reading, a bar while writing); otherwise plain
// lines, one per page of users and per few hundred writes, for logs.
// Sync calls update from the goroutine that runs it, so no locking.
type progress struct {
	w    io.Writer
	fd   int  // the terminal's descriptor, when tty
	tty  bool // w is a terminal
	spin int
	last string
	// drawn is set while the terminal line holds progress, to be cleared.
	drawn bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(f.Fd())) {
		p.fd, p.tty = int(f.Fd()), true
	}
	return p
}

// update is the SyncOptions.Progress callback.
func (p *progress) update(sp ldapauth.SyncProgress) {
	if p.tty {
		p.draw(p.line(sp))
	} else {
		p.plain(sp)
	}
	p.last = sp.Phase
}

// finish clears the terminal line, so that what follows starts clean.
func (p *progress) finish() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

func (p *progress) plain(sp ldapauth.SyncProgress) {
	switch sp.Phase {
	case "read users":
		if sp.Pages > 0 {
			fmt.Fprintf(p.w, "syncgroups: read %d users (%s)\n", sp.Users, plural(sp.Pages, "page"))
		}
	case "read groups":
		if p.last != sp.Phase {
			fmt.Fprintln(p.w, "syncgroups: reading the synced groups' entries")
		}
	case "apply":
		switch {
		case p.last == sp.Phase:
			fmt.Fprintf(p.w, "syncgroups: wrote %d of %d changes\n", sp.Done, sp.Total)
		case sp.Total > 0:
			fmt.Fprintf(p.w, "syncgroups: writing %s\n", plural(sp.Total, "change"))
		}
	}
}

// line renders sp for the terminal line.
func (p *progress) line(sp ldapauth.SyncProgress) string {
	p.spin++
	spinner := string(`|/-\`[p.spin%4])
	switch sp.Phase {
	case "read users":
		if sp.Pages == 0 {
			return spinner + " reading users"
		}
		return fmt.Sprintf("%s reading users: %d read, %s", spinner, sp.Users, plural(sp.Pages, "page"))
	case "read groups":
		return fmt.Sprintf("%s reading group entries: %d read, after %d users", spinner, sp.Groups, sp.Users)
	case "apply":
		return bar("writing", sp.Done, sp.Total, p.width())
	default:
		return ""
	}
}

// width returns the terminal's width in columns.
func (p *progress) width() int {
	if cols, _, err := term.GetSize(p.fd); err == nil && cols > 0 {
		return cols
	}
	return 80
}

// draw replaces the terminal line with s, cut to the terminal's width so
// that it never wraps (a wrapped line cannot be redrawn in place).
func (p *progress) draw(s string) {
	if s == "" {
		p.finish()
		return
	}
	if r := []rune(s); len(r) > p.width()-1 {
		s = string(r[:max(p.width()-1, 0)])
	}
	fmt.Fprint(p.w, "\r", s, "\x1b[K")
	p.drawn = true
}

// bar renders "label [=====>     ] done/total changes  40%" in width
// columns at most.
func bar(label string, done, total, width int) string {
	pct := 100
	if total > 0 {
		pct = done * 100 / total
	}
	tail := fmt.Sprintf(" %d/%d changes %3d%%", done, total, pct)
	n := min(width-1-len(label)-len(tail)-3, 40) // 3: a space and the brackets
	if n < 5 {
		return label + tail
	}
	fill := n * pct / 100
	b := strings.Repeat("=", fill)
	if fill < n {
		b += ">" + strings.Repeat(" ", n-fill-1)
	}
	return label + " [" + b + "]" + tail
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
