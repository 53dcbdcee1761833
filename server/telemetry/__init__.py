"""Telemetry: Prometheus metrics of the router and the background readers of engine load."""
