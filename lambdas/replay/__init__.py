"""The replay assertion Lambda."""
