"""Grading, metrics (pass@k, success@k, bootstrap stderr) and the qualitative diff.

grader (the grading API), answers (extraction: strict and lenient rules, linear in the text),
verify_pool (math-verify in worker interpreters under a deadline), files (``sparkql grade``:
completions from files), metrics, qualitative.

Torch-free by construction: it must work on a laptop that only reads a results store, in the TUI
and in ``sparkql regrade``. May import: sparkql.errors, sparkql.store (never torch, transformers,
vllm, nnsight, textual, nor other runtime parts that do). Keep this file free of imports."""
