package booking_test

import (
	"database/sql"

	"github.com/jackc/pgx/v5/pgxpool"
)

type (
	pgxpoolPool = pgxpool.Pool
	sqlDB       = sql.DB
)
