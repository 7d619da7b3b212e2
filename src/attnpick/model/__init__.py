"""A model before loading: its name resolved, its config read, EXAONE's names, tiny-exaone."""
