"""The runtime: executes plans (models, EAP-IG, interventions, generation, grading). Ships as sparkql.runtime.

Keep this file free of imports: the compiler imports sparkql.runtime.adapters (torch-free)."""
