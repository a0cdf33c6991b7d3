"""Channel connectors: one small module per channel, registered with the hub."""
