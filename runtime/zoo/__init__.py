"""The toy model organism (DESIGN.md 7): tokenizer, tiny Qwen2, base/SFT/GRPO training."""
