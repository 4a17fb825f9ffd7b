"""The Textual terminal UI (sparkql tui). Ships as sparkql.tui."""
