"""connectors.mobilemoney."""
