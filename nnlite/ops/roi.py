"""ROI ops (filled by the pooling work)."""
__all__ = []
