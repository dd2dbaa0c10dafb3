"""Shared test configuration (the embedded-service fixtures come from resgate.testing.fixtures)."""
