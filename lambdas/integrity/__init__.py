"""The integrity assertion Lambda."""
