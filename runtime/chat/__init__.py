"""Chat templates (how conversations become text) and the tokenizer's own template as a fallback."""
