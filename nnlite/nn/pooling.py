"""Pooling modules (filled by the pooling work)."""
__all__ = []
