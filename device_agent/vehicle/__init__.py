"""The vehicle side of the agent: OBD-II over the CAN bus (docs/vehicle.md)."""
