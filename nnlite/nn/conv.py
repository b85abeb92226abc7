"""Convolution modules (filled by the conv work)."""
__all__ = []
