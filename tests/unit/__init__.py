"""Unit tests: spare's modules called in-process, laid out like the package they test."""
