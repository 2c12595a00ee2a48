"""The platform every layer may use: settings, errors, logs without PHI, tracing."""
