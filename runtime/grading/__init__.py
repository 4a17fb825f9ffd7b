"""Grading, metrics (pass@k, success@k, bootstrap stderr) and the qualitative diff.

Torch-free by construction: it must work on a laptop that only reads a results store, in the TUI
and in ``sparkql regrade``. May import: sparkql.errors, sparkql.store (never torch, transformers,
vllm, nnsight, textual, nor other runtime parts that do). Keep this file free of imports."""
