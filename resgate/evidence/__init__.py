"""Evidence: the run folder layout shared by S3 and local disk, its writer, report and query helpers."""
