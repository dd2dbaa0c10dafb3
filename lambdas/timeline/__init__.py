"""The timeline Lambda: writes a run's ``faults.jsonl`` and ``health.jsonl`` from FIS and ECS."""
