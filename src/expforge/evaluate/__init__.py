"""expforge.evaluate step library."""
