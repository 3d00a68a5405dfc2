package sambatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/go-ldapauth/ldapauth/internal/proctest"
	"github.com/go-ldapauth/ldapauth/internal/testcert"
)

const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// acquireLock takes an exclusive flock on path, polling until ctx ends. The
// lock dies with the process, so a crashed test binary never leaves it held.
func acquireLock(ctx context.Context, path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("sambatest: lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("sambatest: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("sambatest: another test binary holds %s: %w", path, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// provision runs samba-tool domain provision into d.Dir, then replaces the
// generated smb.conf with one that keeps every path inside d.Dir, runs only
// the LDAP server and uses a certificate from testcert.
func (d *DC) provision(ctx context.Context) error {
	target := d.Dir
	cmd := exec.CommandContext(ctx, "samba-tool", "domain", "provision",
		"--targetdir="+target,
		"--use-rfc2307",
		"--realm="+Realm,
		"--domain="+Domain,
		"--server-role=dc",
		"--dns-backend=NONE",
		"--host-name="+HostName,
		"--host-ip=127.0.0.1",
		"--adminpass="+d.AdminPassword,
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("sambatest: samba-tool domain provision: %w\n%s", err, out)
	}
	if err := d.writeCerts(); err != nil {
		return err
	}
	return d.writeConf()
}

func (d *DC) writeCerts() error {
	tlsDir := filepath.Join(d.Dir, "tls")
	wrongDir := filepath.Join(d.Dir, "wrongca")
	for _, dir := range []string{tlsDir, wrongDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("sambatest: %w", err)
		}
	}
	ca, err := testcert.NewCA("sambatest CA")
	if err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	pair, err := ca.Issue("127.0.0.1", "localhost", FQDN, HostName)
	if err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	if d.CAFile, _, _, err = testcert.WriteFiles(tlsDir, ca, pair); err != nil {
		return err
	}
	d.CAPool = ca.Pool()
	wrong, err := testcert.NewCA("sambatest wrong CA")
	if err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	wrongPair, err := wrong.Issue("127.0.0.1")
	if err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	d.WrongCAFile, _, _, err = testcert.WriteFiles(wrongDir, wrong, wrongPair)
	return err
}

// writeConf writes smb.conf. Notes:
//   - server services = ldap: simple binds need neither kdc nor rpc; the
//     fewer services, the fewer ports and the faster the start.
//   - interfaces = 127.0.0.1: lo would also bind ::1.
//   - ldap server require strong auth = no: simple binds over plain LDAP.
//     (samba-tool provision --option silently drops this one, hence the
//     rewrite.)
func (d *DC) writeConf() error {
	dir := d.Dir
	tlsDir := filepath.Join(dir, "tls")
	conf := fmt.Sprintf(`# written by sambatest
[global]
	netbios name = %s
	realm = %s
	workgroup = %s
	server role = active directory domain controller
	server services = ldap
	interfaces = 127.0.0.1
	bind interfaces only = yes
	ldap server require strong auth = no
	private dir = %[4]s/private
	state directory = %[4]s/state
	cache directory = %[4]s/cache
	lock directory = %[4]s
	pid directory = %[4]s/run
	ncalrpc dir = %[4]s/run/ncalrpc
	binddns dir = %[4]s/bind-dns
	winbindd socket directory = %[4]s/run/winbindd
	log file = %[4]s/log.%%m
	logging = file
	log level = 1
	idmap_ldb:use rfc2307 = yes
	ldb:nosync = true
	tls enabled = yes
	tls certfile = %[5]s/cert.pem
	tls keyfile = %[5]s/key.pem
	tls cafile = %[5]s/ca.pem
`, HostName, Realm, Domain, dir, tlsDir)
	for _, sub := range []string{"run", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("sambatest: %w", err)
		}
	}
	if err := os.WriteFile(d.confPath(), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	return nil
}

// run starts samba in its own process group and waits until Administrator
// can bind.
func (d *DC) run(ctx context.Context) error {
	logPath := filepath.Join(d.Dir, "samba.out")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("sambatest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("samba", "-s", d.confPath(), "--foreground", "--no-process-group", "--debug-stdout")
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group, so that Stop kills samba's forked children too.
	p, err := proctest.Start(cmd, proctest.Options{Group: true})
	if err != nil {
		return fmt.Errorf("sambatest: start samba: %w", err)
	}
	d.proc = p
	err = p.Ready(ctx, readyTimeout, 100*time.Millisecond, func() error {
		c, err := ldap.DialURL(d.URL, ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetTimeout(5 * time.Second)
		return c.Bind(d.AdminDN, d.AdminPassword)
	})
	if err != nil {
		return fmt.Errorf("sambatest: samba %w\n%s", err, tail(logPath))
	}
	return nil
}

// tail returns the last few kilobytes of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
