package sqlstore

import "context"

// OpenVersion opens the database as a program knowing only the schema up to
// version would leave it, for tests of the migrations.
func OpenVersion(ctx context.Context, driver, dsn string, version int) (*Store, error) {
	return open(ctx, driver, dsn, version)
}
