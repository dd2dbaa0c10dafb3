"""The cleanup Lambda: stops a run's load task and FIS experiments after an aborted or timed-out execution."""
