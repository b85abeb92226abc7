"""Elementwise, loss and normalisation ops (filled by the nn-basics work)."""
__all__ = []
