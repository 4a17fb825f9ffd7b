"""Screens and tab views of the TUI, one module per feature."""
