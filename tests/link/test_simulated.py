"""`--simulate`'s resources: declared as Thinger's examples, and checked inputs.

Through the server's router, as the resource APIs call them, and on the state object alone.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from thingwire.agent.v1 import agent_pb2

from device_agent.resources import from_value, to_value
from device_agent.simulated import HOME, InvalidInput, SimulatedDevice, simulate
from server import errors
from tests.link.conftest import LinkWorld, connected, stopped

GENEROUS_S = 30.0
Kind = agent_pb2.ResourceKind


def test_the_simulated_resources_are_declared_as_the_examples(world: LinkWorld) -> None:
    async def scenario() -> dict[str, tuple[int, Any]]:
        agent = world.agent()
        simulate(agent)
        task = await connected(agent)
        try:
            declared = await world.running.state.router.resources(world.key)
        finally:
            await stopped(task)
        for resource in declared:
            assert resource.description, resource.name
        return {r.name: (r.kind, from_value(r.example) if r.example else None) for r in declared}

    assert world.run(scenario) == {
        "location": (Kind.RESOURCE_KIND_OUTPUT, HOME),
        "temperature": (Kind.RESOURCE_KIND_OUTPUT, 21.0),
        "relay": (Kind.RESOURCE_KIND_INPUT, True),
        "rgb": (Kind.RESOURCE_KIND_INPUT, {"r": 0, "g": 255, "b": 0}),
        "command": (Kind.RESOURCE_KIND_INPUT, "New customer: 101 today!"),
        "io": (Kind.RESOURCE_KIND_INPUT_OUTPUT, {"value1": 20, "value2": 10}),
        "reset": (Kind.RESOURCE_KIND_NONE, None),
    }


def test_the_simulated_resources_answer_through_the_router(world: LinkWorld) -> None:
    router = world.running.state.router
    sim = SimulatedDevice(rng=random.Random(3))

    async def call(name: str, value: Any = None) -> Any:
        given = to_value(value) if value is not None else None
        return from_value(await router.invoke(world.key, name, given, GENEROUS_S))

    async def scenario() -> dict[str, Any]:
        agent = world.agent()
        simulate(agent, sim)
        task = await connected(agent)
        try:
            answers = {
                "io": await call("io", {"value1": 20, "value2": 10}),
                "relay": await call("relay", True),
                "rgb": await call("rgb", {"r": 0, "g": 255, "b": 0}),
                "command": await call("command", "New customer: 101 today!"),
                "location": await call("location"),
                "temperature": await call("temperature"),
            }
            answers["state"] = (sim.relay, dict(sim.rgb), sim.command)
            answers["reset"] = await call("reset")
        finally:
            await stopped(task)
        return answers

    answers = world.run(scenario)
    assert answers["io"] == {"sum": 30, "mult": 200}
    assert answers["relay"] is None
    assert answers["state"] == (True, {"r": 0, "g": 255, "b": 0}, "New customer: 101 today!")
    assert set(answers["location"]) == {"lat", "lon"}
    assert answers["location"]["lat"] == pytest.approx(HOME["lat"], abs=1e-3)
    assert 15 <= answers["temperature"] <= 30
    assert answers["reset"] is None
    assert (sim.relay, sim.rgb, sim.command, sim.resets) == (False, {"r": 0, "g": 0, "b": 0}, "", 1)


def test_a_bad_input_is_the_callers_error_with_the_devices_message(world: LinkWorld) -> None:
    router = world.running.state.router

    async def scenario() -> tuple[list[str], Any]:
        agent = world.agent()
        simulate(agent)
        task = await connected(agent)
        messages = []
        try:
            for name, value in [
                ("io", {"value1": "20", "value2": 10}),
                ("relay", "on"),
                ("rgb", {"r": 300, "g": 0, "b": 0}),
            ]:
                with pytest.raises(errors.FailedPrecondition) as info:
                    await router.invoke(world.key, name, to_value(value), GENEROUS_S)
                messages.append(info.value.message)
            after = await router.invoke(
                world.key, "io", to_value({"value1": 2, "value2": 3}), GENEROUS_S
            )
        finally:
            await stopped(task)
        return messages, from_value(after)

    messages, after = world.run(scenario)
    prefix = "the device reported an error: "
    assert messages == [
        prefix + 'io value1 must be a number, not "20"',
        prefix + 'relay takes true or false, not "on"',
        prefix + "rgb r must be an integer 0..255, not 300",
    ]
    assert after == {"sum": 5, "mult": 6}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, 'io takes {"value1", "value2"}, not null'),
        ([20, 10], 'io takes {"value1", "value2"}, not [20, 10]'),
        ({"value1": 1}, 'io takes {"value1", "value2"}, not {"value1": 1}'),
        ({"value1": 1, "value2": 2, "x": 3}, 'io takes {"value1", "value2"}, not'),
        ({"value1": True, "value2": 2}, "io value1 must be a number, not true"),
        ({"value1": 1, "value2": None}, "io value2 must be a number, not null"),
        ({"value1": 1e200, "value2": 1e200}, "io values too large"),
    ],
)
def test_io_refuses_what_is_not_two_numbers(value: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SimulatedDevice().sum_and_mult(value)
    assert str(info.value).startswith(message)


def test_io_keeps_fractions_and_shows_whole_numbers_as_integers() -> None:
    sim = SimulatedDevice()
    assert sim.sum_and_mult({"value1": 1.5, "value2": 2.0}) == {"sum": 3.5, "mult": 3}
    assert sim.sum_and_mult({"value1": -4.0, "value2": 10.0}) == {"sum": 6, "mult": -40}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1, "relay takes true or false, not 1"),
        (None, "relay takes true or false, not null"),
    ],
)
def test_relay_takes_only_a_bool(value: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=f"^{message}$"):
        SimulatedDevice().set_relay(value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"r": 0, "g": 0}, 'rgb takes {"r", "g", "b"}, not {"r": 0, "g": 0}'),
        ("red", 'rgb takes {"r", "g", "b"}, not "red"'),
        ({"r": 0, "g": 1.5, "b": 0}, "rgb g must be an integer 0..255, not 1.5"),
        ({"r": 0, "g": 0, "b": -1}, "rgb b must be an integer 0..255, not -1"),
        ({"r": False, "g": 0, "b": 0}, "rgb r must be an integer 0..255, not false"),
    ],
)
def test_rgb_takes_three_integers_of_a_byte(value: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SimulatedDevice().set_rgb(value)
    assert str(info.value) == message


def test_rgb_accepts_whole_numbers_as_json_sends_them() -> None:
    sim = SimulatedDevice()
    sim.set_rgb({"r": 255.0, "g": 0.0, "b": 12.0})  # a protobuf Value's numbers are doubles
    assert sim.rgb == {"r": 255, "g": 0, "b": 12}


def test_command_takes_a_string_and_a_long_refusal_is_shortened() -> None:
    sim = SimulatedDevice()
    sim.set_command("hello")
    assert sim.command == "hello"
    with pytest.raises(InvalidInput) as info:
        sim.set_command(["x" * 500])
    message = str(info.value)
    assert message.startswith('command takes a string, not ["xxx')
    assert message.endswith("…")
    assert len(message) < 120


def test_temperature_and_location_wander_within_bounds() -> None:
    sim = SimulatedDevice(rng=random.Random(1))
    readings = [sim.read_temperature() for _ in range(2000)]
    assert min(readings) >= 15
    assert max(readings) <= 30
    assert len(set(readings)) > 10
    first, second = sim.read_location(), sim.read_location()
    assert first != second
    assert abs(second["lat"] - HOME["lat"]) < 0.01
