"""Training loops (Phase 1 tokenizer)."""
