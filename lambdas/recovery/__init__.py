"""The recovery assertion Lambda."""
