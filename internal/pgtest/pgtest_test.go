package pgtest

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCPUTime: the server's CPU time counts the work of its backends, so
// a benchmark can report what the server spent.
func TestCPUTime(t *testing.T) {
	s := Start(t)
	db, err := sql.Open("pgx", s.DSN("postgres"))
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, db.PingContext(t.Context()))
	before := s.CPUTime()
	var sum int64
	require.NoError(t, db.QueryRowContext(t.Context(), `SELECT sum(i) FROM generate_series(1, 20000000) i`).Scan(&sum))
	assert.Equal(t, int64(20000000)*20000001/2, sum)
	assert.Greater(t, s.CPUTime(), before, "20 million rows summed cost the server CPU time")
}
