"""Storage: SQLModel tables, bulk intake writes, the audit log and the on-disk model registry."""
