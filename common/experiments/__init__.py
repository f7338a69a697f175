"""Experiment drivers built on the bundles (label-efficiency curves)."""
