"""The FastAPI entrypoint: parse, call one handler, map errors to OperationOutcome."""
