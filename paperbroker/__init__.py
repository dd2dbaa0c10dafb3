"""paperbroker: the reference event-driven trading system that ResilienceGate tests (with seeded bugs)."""
