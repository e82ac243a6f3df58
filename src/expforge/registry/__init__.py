"""expforge.registry."""
