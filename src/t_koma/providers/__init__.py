"""Upstream model providers: one module per provider, all behind `Provider` (see `base`)."""
