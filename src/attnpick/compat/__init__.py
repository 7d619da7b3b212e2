"""The Unsloth-compatible API: FastLanguageModel, chat templates, TRL's keywords, precision."""
