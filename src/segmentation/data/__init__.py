"""Customer tables: reading and writing (local or fsspec URLs, atomically), row chunks, synthetic tables."""
