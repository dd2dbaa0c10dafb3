"""The fault-injection preflight Lambda: before a run with network faults, checks that the target services'
task definitions are set up for FIS's ECS task network actions (``handler.find_missing``)."""
