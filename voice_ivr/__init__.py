"""The voice channel: Asterisk, the ARI client, the IVR call flow, speech engines."""
