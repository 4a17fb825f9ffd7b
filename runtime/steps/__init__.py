"""One handler per step kind (``run_<kind>(step, ctx) -> StepOutput``): where a plan's step meets
the parts that do the work (models, eap, generation, grading). Registered by name in
``sparkql.runtime.execution.handlers``; the only runtime modules that read step specs.

May import: every other runtime part, sparkql.plan, sparkql.store. Keep this file free of imports."""
