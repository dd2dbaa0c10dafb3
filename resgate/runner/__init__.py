"""The local gate runner: walks the phases of a gate run against local processes and embedded services."""
