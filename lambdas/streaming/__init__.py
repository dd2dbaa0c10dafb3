"""The streaming assertion Lambda."""
