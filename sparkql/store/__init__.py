"""The DuckDB results store. Never imports torch."""
