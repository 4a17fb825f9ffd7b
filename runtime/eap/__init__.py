"""Circuits: the computational graph of a model, the EAP-IG engine, selection (top-n, pruning,
tau, head scores), faithfulness, clean/corrupted prompt pairs and export (JSON/DOT/SVG).

May import: runtime.models, runtime.datasets, runtime.generation.prompting, sparkql.plan.
Keep this file free of imports."""
