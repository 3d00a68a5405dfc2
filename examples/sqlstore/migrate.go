package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// schemaFiles holds one directory per dialect, each with the migrations
// NNN_name.sql, applied in order, each in its own transaction.
//
//go:embed schema
var schemaFiles embed.FS

type dialect struct {
	name string
	// lock serialises migrations across processes inside a transaction.
	lock string
	// placeholders numbered ($1, $2, ...) instead of ?.
	numbered bool
	// forUpdate ends a SELECT that locks its rows until the transaction
	// ends. SQLite needs none: a write transaction locks the database.
	forUpdate string
}

var (
	sqliteDialect = dialect{name: "sqlite"} // _txlock=immediate already serialises writers
	// The key is an arbitrary constant: "ldapauth" in ASCII.
	postgresDialect = dialect{name: "postgres", lock: `SELECT pg_advisory_xact_lock(7596496375727657320)`, numbered: true, forUpdate: " FOR UPDATE"}
)

// rebind turns the ? placeholders of query into the dialect's own. The
// queries of this package have no ? inside string literals.
func (d dialect) rebind(query string) string {
	if !d.numbered {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

type migration struct {
	version int
	name    string
	stmts   []string
}

// migrations returns the dialect's migrations in order.
func (d dialect) migrations() ([]migration, error) {
	dir := path.Join("schema", d.name)
	entries, err := fs.ReadDir(schemaFiles, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("sqlstore: schema file %s is not NNN_name.sql", e.Name())
		}
		text, err := fs.ReadFile(schemaFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), stmts: splitStatements(string(text))})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("sqlstore: schema %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return out, nil
}

// splitStatements splits a schema file at the semicolons that end a line,
// comment lines left out.
func splitStatements(text string) []string {
	var lines []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			lines = append(lines, line)
		}
	}
	var out []string
	for _, stmt := range strings.Split(strings.Join(lines, "\n"), ";\n") {
		if stmt = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(stmt), ";")); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}

// SchemaVersion is the version of the newest schema this package knows.
func SchemaVersion() int {
	ms, err := sqliteDialect.migrations()
	if err != nil {
		panic(err) // the embedded files are fixed: a failure is a bug
	}
	return len(ms)
}

// migrate applies the migrations the database lacks, up to version (every
// one for 0). Two processes opening
// the same database at once apply each migration once: the second waits for
// the first's transaction and then finds the version recorded.
func (s *Store) migrate(ctx context.Context, version int) error {
	ms, err := s.dialect.migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if version > 0 && m.version > version {
			break
		}
		err := s.inTx(ctx, "schema "+m.name, func(tx *sql.Tx) error {
			if s.dialect.lock != "" {
				if _, err := tx.ExecContext(ctx, s.dialect.lock); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
				version INTEGER PRIMARY KEY,
				name TEXT NOT NULL,
				applied_at TIMESTAMP NOT NULL)`); err != nil {
				return err
			}
			var one int
			err := tx.QueryRowContext(ctx, s.dialect.rebind(`SELECT 1 FROM schema_version WHERE version = ?`), m.version).Scan(&one)
			if err == nil {
				return nil // applied already
			}
			if err != sql.ErrNoRows {
				return err
			}
			for _, stmt := range m.stmts {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, stmt)
				}
			}
			_, err = tx.ExecContext(ctx, s.dialect.rebind(`INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)`),
				m.version, m.name, s.now())
			return err
		})
		if err != nil {
			return err
		}
	}
	var newest int
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&newest); err != nil {
		return fmt.Errorf("sqlstore: read schema version: %w", err)
	}
	if newest > len(ms) {
		return fmt.Errorf("sqlstore: the database has schema version %d, newer than this program's %d", newest, len(ms))
	}
	return nil
}
