"""The verdict Lambda: merges the check results and writes the run's verdict evidence."""
