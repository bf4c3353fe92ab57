"""The daemon: config, ingestion, detection, alerts, scheduling and the `warden` CLI."""
