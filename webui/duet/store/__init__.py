"""SQLite storage: `db` opens it, `migrations` shapes it, one module of queries per area."""
