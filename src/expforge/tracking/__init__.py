"""expforge.tracking."""
