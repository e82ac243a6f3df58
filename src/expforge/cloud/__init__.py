"""expforge.cloud."""
