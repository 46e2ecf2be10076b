"""Restore fidelity: the richest tree, part by part, back to the last bit."""
