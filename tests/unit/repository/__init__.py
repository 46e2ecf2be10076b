"""Unit tests of spare.repository."""
