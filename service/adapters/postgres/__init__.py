"""PostgreSQL through psycopg 3: pool, migrations, named SQL, the unit of work."""
