"""What the engine runs on: credentials, storage clients, retries, memory limits, its own telemetry."""
