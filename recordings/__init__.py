"""Call recordings: encrypted at rest, read back by byte range for HTTP playback."""
