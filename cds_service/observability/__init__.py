"""Logging and metrics: what the service says about itself, never patient data."""
