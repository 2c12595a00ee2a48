"""The entry points: the HTTP API, the command line and its commands (the worker is `workers/`)."""
