"""The gate config schema and its loader (shared by `resgate run` and the CDK app)."""

from resgate.config.schema import GateConfig, check_blast_radius, load_config, load_config_text

__all__ = ["GateConfig", "check_blast_radius", "load_config", "load_config_text"]
