"""Test support: pytest fixtures for the embedded services, and tiny services used by tests."""
