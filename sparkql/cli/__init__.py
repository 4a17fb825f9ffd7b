"""The sparkql command line."""
