"""The commands: create (backup), restore, verify, lock and unlock."""
