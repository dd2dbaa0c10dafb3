"""The redeliver step of a ``duplicate_delivery`` fault on AWS (started by FIS through an SSM automation)."""
