"""The 12 V battery as AutoPi's `obd.bat` records describe it: a charge level and a state
from the voltage (docs/vehicle.md, "The battery").

A lead-acid battery at rest reads about 12.7 V full and 11.9 V flat, roughly linear in
between; with the engine running the alternator holds it at 13.8 to 14.4 V, and above 14.9 V
it is being overcharged. The seed's example is `{"voltage": 15.4, "state": "overcharging",
"level": 100}`. The level is the resting charge, so it reads 100 whenever the alternator
charges; the state tells the two apart.
"""

from __future__ import annotations

__all__ = ["battery_fields", "charge_level", "charge_state"]

FLAT_V = 11.9
FULL_V = 12.7
#: The upper bound of each state's voltages, in order; above the last: overcharging.
STATES = (
    (12.0, "critical_level"),
    (12.9, "discharging"),
    (13.5, "charging_slow"),
    (14.9, "charging"),
)


def charge_level(voltage: float) -> int:
    """The resting charge in percent, 0 to 100."""
    fraction = (voltage - FLAT_V) / (FULL_V - FLAT_V)
    return round(100 * min(1.0, max(0.0, fraction)))


def charge_state(voltage: float) -> str:
    for bound, state in STATES:
        if voltage <= bound:
            return state
    return "overcharging"


def battery_fields(voltage: float) -> dict[str, int | str]:
    """The fields an `obd.bat` record carries beside its `voltage`."""
    return {"level": charge_level(voltage), "state": charge_state(voltage)}
