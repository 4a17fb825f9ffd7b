"""The runtime: executes plans. Ships as ``sparkql.runtime``. Its parts, one folder each:

- ``execution/``  the executor, handler table, run context, progress, ``sparkql.run``
- ``steps/``      one handler per step kind (load_model, circuit, diff/heads, cohort, intervene,
                  generate, grade, aggregate)
- ``models/``     family adapters, config.json reader, loading, interventions, tiny models
- ``eap/``        the EAP-IG engine and everything about circuits
- ``generation/`` prompts, backend choice, transformers and vLLM backends
- ``grading/``    grading, metrics, qualitative diff (torch-free)
- ``zoo/``        the toy model organism's training
- ``datasets.py`` dataset files -> rows with roles applied (torch-free)

docs/architecture.md has the picture and the allowed imports (tests/test_layering.py checks them).
Keep this file free of imports: the compiler imports torch-free modules below it."""
