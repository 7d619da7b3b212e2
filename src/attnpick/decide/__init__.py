"""Facts, the probe and the pure decision."""
