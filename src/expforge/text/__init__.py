"""expforge.text."""
