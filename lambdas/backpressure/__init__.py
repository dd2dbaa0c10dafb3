"""The backpressure assertion Lambda."""
