"""What runs the service: settings, the CLI, the composition root every entry point goes through,
the Starlette app, serving, and what operators watch (health, metrics, logs, tracing)."""
