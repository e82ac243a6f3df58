"""expforge.train step library."""
