"""expforge.standins."""
