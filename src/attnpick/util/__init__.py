"""Small shared pieces: child processes, caches, files, plots, options."""
