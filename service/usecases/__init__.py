"""Use cases: one handler per command, written against the ports."""
