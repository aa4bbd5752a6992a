"""Command-line helpers that ship with the edge: simulate, replay, watch, synthetic data, a local broker."""
