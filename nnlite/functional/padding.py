"""F.pad with constant/reflect/replicate/circular modes (filled by the conv work)."""
__all__ = []
