"""Experiment drivers built on the bundles: the evidence runner (label-efficiency sweeps, probes, the card)."""
