"""expforge.viz step library."""
