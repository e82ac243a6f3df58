"""expforge.drift."""
