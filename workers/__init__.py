"""Celery entrypoint: the app, its schedule and thin tasks that call service handlers."""
