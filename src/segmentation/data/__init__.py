"""Customer tables: reading, validation, schemas and synthetic data."""
