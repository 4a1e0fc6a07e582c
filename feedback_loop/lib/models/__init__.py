"""Models: the registry, artifacts on disk, serving with fallbacks, the promotion gate."""
