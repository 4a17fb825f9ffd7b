"""Models: the model-family adapter table, the one reader of config.json, loading and the model
cache, head interventions as weight edits, and tiny random models for tests and benchmarks.

``adapters`` and ``config`` are torch-free (the compiler uses them to check shapes); the rest
imports torch/transformers. May import: sparkql.plan, sparkql.errors. Keep this file free of imports."""
