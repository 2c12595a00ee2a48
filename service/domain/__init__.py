"""Pure clinical domain: facts, features, risk model, alert rules; no I/O, no clock."""
