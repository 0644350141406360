"""connectors.stream."""
