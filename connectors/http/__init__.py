"""connectors.http."""
