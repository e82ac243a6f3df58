"""expforge.tune."""
