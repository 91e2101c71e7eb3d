"""Telemetry ingest: MQTT consumer, OsmAnd endpoint, validation, batch writer."""
