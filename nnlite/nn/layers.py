"""Basic layers (filled by the nn-basics work)."""
__all__ = []
