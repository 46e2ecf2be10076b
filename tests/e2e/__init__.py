"""End-to-end tests: spare run as a process (``python -m spare``), as a sysadmin runs it."""
