"""Composition: builds the adapters and use cases an entry point needs."""
