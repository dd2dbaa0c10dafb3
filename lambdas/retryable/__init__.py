"""The retryable assertion Lambda."""
