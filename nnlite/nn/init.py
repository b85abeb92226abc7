"""Parameter initialisers (filled by the nn-basics work)."""
