"""Development tools: synthetic cohorts and private PostgreSQL/Redis for `refracture demo` and the tests."""
