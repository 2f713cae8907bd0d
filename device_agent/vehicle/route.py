"""The simulated car's route: waypoints, the legs between them, and positions along them
(docs/vehicle.md, "The simulated drive").

Distances are great-circle (haversine) on a spherical Earth and a leg's heading is its
initial bearing: over legs of a few hundred metres the difference from the ellipsoid is
centimetres, far below a GPS fix's own error.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AALBORG_LOOP", "Leg", "Point", "Route", "bearing_deg", "destination", "distance_m"]

#: The mean Earth radius, metres.
EARTH_RADIUS_M = 6_371_008.8

#: (lat, lon) in degrees.
Point = tuple[float, float]

#: A loop of about 4.2 km around the seed's example position (57.02241, 9.89919), where it
#: starts and ends: eight waypoints, about half a kilometre apart.
AALBORG_LOOP: tuple[Point, ...] = (
    (57.02241, 9.89919),
    (57.01990, 9.90350),
    (57.01720, 9.91080),
    (57.01905, 9.92010),
    (57.02330, 9.92250),
    (57.02720, 9.91650),
    (57.02810, 9.90620),
    (57.02560, 9.89700),
    (57.02241, 9.89919),
)


def distance_m(a: Point, b: Point) -> float:
    """The great-circle distance between two points (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing_deg(a: Point, b: Point) -> float:
    """The initial bearing from `a` to `b`, degrees clockwise from north, 0 ≤ θ < 360."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x)) % 360


def destination(start: Point, bearing: float, distance: float) -> Point:
    """The point `distance` metres from `start` along the great circle of `bearing`."""
    lat1, lon1 = map(math.radians, start)
    theta, delta = math.radians(bearing), distance / EARTH_RADIUS_M
    lat2 = math.asin(
        math.sin(lat1) * math.cos(delta) + math.cos(lat1) * math.sin(delta) * math.cos(theta)
    )
    lon2 = lon1 + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(lat1),
        math.cos(delta) - math.sin(lat1) * math.sin(lat2),
    )
    return math.degrees(lat2), (math.degrees(lon2) + 540) % 360 - 180


@dataclass(frozen=True)
class Leg:
    """The stretch between two waypoints, driven on one heading."""

    start: Point
    end: Point

    @property
    def length_m(self) -> float:
        return distance_m(self.start, self.end)

    @property
    def bearing(self) -> float:
        return bearing_deg(self.start, self.end)

    def at(self, along_m: float) -> Point:
        """The point `along_m` metres from the leg's start (its end past its length)."""
        if along_m >= self.length_m:
            return self.end
        return destination(self.start, self.bearing, max(0.0, along_m))


class Route:
    """Waypoints driven in order. A route whose last waypoint is not its first is driven
    back the other way the next time (`reversed`), so the car never jumps."""

    def __init__(self, waypoints: Sequence[Point]) -> None:
        if len(waypoints) < 2:
            raise ValueError("a route needs at least two waypoints")
        self.waypoints = tuple(waypoints)
        self.legs = tuple(Leg(a, b) for a, b in itertools.pairwise(self.waypoints))
        if any(leg.length_m == 0 for leg in self.legs):
            raise ValueError("a route's consecutive waypoints must differ")

    @property
    def length_m(self) -> float:
        return sum(leg.length_m for leg in self.legs)

    @property
    def closed(self) -> bool:
        return distance_m(self.waypoints[0], self.waypoints[-1]) < 1.0

    def reversed(self) -> Route:
        return Route(self.waypoints[::-1])

    def turn_deg(self, index: int) -> float:
        """How sharply the car turns at the end of leg `index`: 0 straight on, 180 back;
        180 at the route's end, where it stops."""
        if index + 1 >= len(self.legs):
            return 180.0
        change = abs(self.legs[index + 1].bearing - self.legs[index].bearing) % 360
        return min(change, 360 - change)
