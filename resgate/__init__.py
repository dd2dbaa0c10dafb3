"""ResilienceGate: a resiliency gate for event-driven trading systems (local mode and AWS)."""

__version__ = "0.1.0"
