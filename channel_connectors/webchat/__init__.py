"""The web chat channel: the citizen page, the embeddable widget and its WebSocket."""
