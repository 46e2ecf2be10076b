"""The repository format: objects, packs, index, manifest and snapshots in one bucket."""
