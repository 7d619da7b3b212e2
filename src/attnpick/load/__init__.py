"""The proven chain: smoke runs, loading, the confirmation, ranks' agreement, 4-bit, LoRA."""
