"""Telemetry ingest: the writer that stores pushed and uploaded batches."""
