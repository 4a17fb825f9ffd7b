"""Generation: chat prompts (think on/off), the backend choice (decided once, at run time), the
transformers backend (the reference) and the vLLM backend (optional extra).

``backend`` and ``prompting``'s template logic are torch-free; the backends import torch or vLLM
inside. May import: runtime.models, sparkql.plan. Keep this file free of imports."""
