"""Threshold alerts on a step's metrics: rules (``accuracy<0.9``), the alerts they raise, where they are sent."""
