"""The slo assertion Lambda."""
