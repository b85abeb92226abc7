"""Optimisers (filled by the nn-basics work)."""
