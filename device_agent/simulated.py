"""The demo device of `thingwire agent --simulate`: the resources of Thinger's examples.

Each resource is the one the Thinger documentation uses as its example, with the same name,
kind and value shape (docs/device-link.md, "The simulated device"):

| resource | kind | value |
|---|---|---|
| `location` | output | `{"lat": <number>, "lon": <number>}` |
| `temperature` | output | a number (degrees Celsius) |
| `relay` | input | `true` or `false` |
| `rgb` | input | `{"r": <0..255>, "g": <0..255>, "b": <0..255>}` |
| `command` | input | a string |
| `io` | input/output | `{"value1": a, "value2": b}` gives `{"sum": a + b, "mult": a * b}` |
| `reset` | no parameters | puts the device back in its first state |

Inputs are checked: a value of the wrong shape makes the handler raise `InvalidInput`, whose
message the caller receives (the server reports it as the device's error). The handlers are
coroutines that never block, so they run on the agent's loop and need no lock.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any

from device_agent.agent import Agent

log = logging.getLogger(__name__)

#: Where the simulated device starts: the position in Thinger's location example.
HOME = {"lat": 40.125698, "lon": -5.466911}
START_TEMPERATURE = 21.0
#: The simulated temperature wanders within these bounds.
COLDEST, HOTTEST = 15.0, 30.0
#: The most a shown value of a refused input may take in an error message.
_SHOWN = 80


class InvalidInput(ValueError):
    """An input value of the wrong shape; its message is what the caller is told."""


@dataclass
class SimulatedDevice:
    """The state behind the simulated resources: what a caller changed, what it reads."""

    rng: random.Random = field(default_factory=random.Random)
    lat: float = HOME["lat"]
    lon: float = HOME["lon"]
    temperature: float = START_TEMPERATURE
    relay: bool = False
    rgb: dict[str, int] = field(default_factory=lambda: {"r": 0, "g": 0, "b": 0})
    command: str = ""
    resets: int = 0

    def read_location(self) -> dict[str, float]:
        """A position a few metres from the last one."""
        self.lat = round(self.lat + self.rng.uniform(-1e-4, 1e-4), 6)
        self.lon = round(self.lon + self.rng.uniform(-1e-4, 1e-4), 6)
        return {"lat": self.lat, "lon": self.lon}

    def read_temperature(self) -> float:
        """A reading a little off the last one, within COLDEST..HOTTEST."""
        drift = self.temperature + self.rng.uniform(-0.25, 0.25)
        self.temperature = round(min(HOTTEST, max(COLDEST, drift)), 2)
        return self.temperature

    def set_relay(self, value: Any) -> None:
        if not isinstance(value, bool):
            raise InvalidInput(f"relay takes true or false, not {_show(value)}")
        self.relay = value
        log.info("relay %s", "on" if value else "off")

    def set_rgb(self, value: Any) -> None:
        if not isinstance(value, dict) or set(value) != {"r", "g", "b"}:
            raise InvalidInput(f'rgb takes {{"r", "g", "b"}}, not {_show(value)}')
        colour = {}
        for channel in ("r", "g", "b"):
            number = value[channel]
            if not _is_number(number) or number != int(number) or not 0 <= number <= 255:
                raise InvalidInput(f"rgb {channel} must be an integer 0..255, not {_show(number)}")
            colour[channel] = int(number)
        self.rgb = colour
        log.info("rgb set to %s", colour)

    def set_command(self, value: Any) -> None:
        if not isinstance(value, str):
            raise InvalidInput(f"command takes a string, not {_show(value)}")
        self.command = value
        log.info("command received: %s", value)

    def sum_and_mult(self, value: Any) -> dict[str, float]:
        """Thinger's `io` example: the sum and the product of two numbers."""
        if not isinstance(value, dict) or set(value) != {"value1", "value2"}:
            raise InvalidInput(f'io takes {{"value1", "value2"}}, not {_show(value)}')
        first, second = value["value1"], value["value2"]
        for name, number in (("value1", first), ("value2", second)):
            if not _is_number(number):
                raise InvalidInput(f"io {name} must be a number, not {_show(number)}")
        total, product = first + second, first * second
        if not (math.isfinite(total) and math.isfinite(product)):
            raise InvalidInput("io values too large: the result is not a finite number")
        return {"sum": _tidy(total), "mult": _tidy(product)}

    def reset(self) -> None:
        """Back to the first state, as a rebooted board would be."""
        self.lat, self.lon = HOME["lat"], HOME["lon"]
        self.temperature = START_TEMPERATURE
        self.relay = False
        self.rgb = {"r": 0, "g": 0, "b": 0}
        self.command = ""
        self.resets += 1
        log.info("reset (%d so far)", self.resets)


def simulate(agent: Agent, device: SimulatedDevice | None = None) -> SimulatedDevice:
    """Declare the simulated resources on `agent`; returns the state they act on."""
    sim = device or SimulatedDevice()

    @agent.output("location", description="GPS position in degrees", example=HOME)
    async def location() -> dict[str, float]:
        return sim.read_location()

    @agent.output("temperature", description="degrees Celsius", example=START_TEMPERATURE)
    async def temperature() -> float:
        return sim.read_temperature()

    @agent.input("relay", description="switches the relay on (true) or off (false)", example=True)
    async def relay(value: Any) -> None:
        sim.set_relay(value)

    @agent.input("rgb", description="the light's colour", example={"r": 0, "g": 255, "b": 0})
    async def rgb(value: Any) -> None:
        sim.set_rgb(value)

    @agent.input("command", description="a text for the screen", example="New customer: 101 today!")
    async def command(value: Any) -> None:
        sim.set_command(value)

    @agent.io(
        "io",
        description="the sum and the product of value1 and value2",
        example={"value1": 20, "value2": 10},
    )
    async def io(value: Any) -> dict[str, float]:
        return sim.sum_and_mult(value)

    @agent.run("reset", description="puts the device back in its first state")
    async def reset() -> None:
        sim.reset()

    return sim


def _is_number(value: Any) -> bool:
    """A finite JSON number (a bool is not one, though Python thinks it is an int)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _tidy(number: float) -> float:
    """A whole number as an int, so 20 + 10 reads 30 and not 30.0."""
    return int(number) if float(number).is_integer() else number


def _show(value: Any) -> str:
    """A refused value as JSON, shortened, for an error message; 300.0 reads 300, as sent."""
    shown = json.dumps(_whole(value), default=repr)
    return shown if len(shown) <= _SHOWN else shown[: _SHOWN - 1] + "…"


def _whole(value: Any) -> Any:
    """`value` with its whole floats as ints (a protobuf Value holds every number as a double)."""
    if isinstance(value, float) and math.isfinite(value):
        return _tidy(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value
