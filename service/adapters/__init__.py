"""Adapters to the outside: PostgreSQL, the Celery broker, local services."""
