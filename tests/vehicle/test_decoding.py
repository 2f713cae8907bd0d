"""SAE J1979 decoding, each PID against values worked out by hand from its formula."""

from __future__ import annotations

import pytest

from device_agent.vehicle import dtc, pids
from device_agent.vehicle.pids import DecodeError

HAND_WORKED = [
    # RPM = (256A + B) / 4: 0x1A 0xF8 → (6656 + 248) / 4 = 1726
    (b"\x41\x0c\x1a\xf8", "rpm", 1726.0),
    # speed = A: 0x3C → 60 km/h
    (b"\x41\x0d\x3c", "speed", 60.0),
    # coolant = A - 40: 0x7B (123) → 83 °C
    (b"\x41\x05\x7b", "coolant_temp", 83.0),
    # load = A · 100 / 255: 0x80 (128) → 50.196 %
    (b"\x41\x04\x80", "engine_load", 50.196),
    # intake air = A - 40: 0x28 (40) → 0 °C
    (b"\x41\x0f\x28", "intake_temp", 0.0),
    # throttle = A · 100 / 255: 0xFF → 100 %
    (b"\x41\x11\xff", "throttle_pos", 100.0),
    # fuel = A · 100 / 255: 0x33 (51) → 20 %
    (b"\x41\x2f\x33", "fuel_level", 20.0),
    # control module voltage = (256A + B) / 1000: 0x31 0x9C (12700) → 12.7 V
    (b"\x41\x42\x31\x9c", "control_module_voltage", 12.7),
    # MAF = (256A + B) / 100: 0x01 0x2C (300) → 3 g/s
    (b"\x41\x10\x01\x2c", "maf", 3.0),
    # run time = 256A + B: 0x01 0x00 → 256 s
    (b"\x41\x1f\x01\x00\xcc\xcc", "run_time", 256.0),
    # intake manifold pressure = A: 0x65 (101) → 101 kPa
    (b"\x41\x0b\x65", "intake_pressure", 101.0),
    # ambient air = A - 40: 0x3C (60) → 20 °C
    (b"\x41\x46\x3c", "ambient_air_temp", 20.0),
    # engine oil = A - 40: 0x82 (130) → 90 °C
    (b"\x41\x5c\x82", "oil_temp", 90.0),
]


@pytest.mark.parametrize(("answer", "name", "value"), HAND_WORKED)
def test_each_pid_decodes_by_its_formula(answer: bytes, name: str, value: float) -> None:
    entry, decoded = pids.decode(answer)
    assert entry.name == name
    assert decoded == value


def test_every_pid_of_the_table_has_a_hand_worked_case() -> None:
    assert {name for _, name, _ in HAND_WORKED} == set(pids.BY_NAME)


def test_the_battery_is_the_seeds_obd_bat_voltage() -> None:
    entry, voltage = pids.decode(b"\x41\x42\x38\x40")  # 14400 → 14.4 V
    assert (entry.record, entry.field, voltage) == ("obd.bat", "voltage", 14.4)
    assert pids.lookup("rpm").record == "obd.rpm"


@pytest.mark.parametrize(
    "answer", [b"", b"\x41", b"\x41\x0c\x1a", b"\x42\x0c\x00\x00", b"\x41\x99\x00"]
)
def test_answers_that_do_not_fit_are_decode_errors(answer: bytes) -> None:
    with pytest.raises(DecodeError):
        pids.decode(answer)


def test_lookup_by_name_number_or_text() -> None:
    assert pids.lookup("RPM").pid == 0x0C
    assert pids.lookup(0x0D).name == "speed"
    assert pids.lookup("0x42").name == "control_module_voltage"
    assert pids.lookup("12").name == "rpm"
    with pytest.raises(KeyError, match="unknown PID"):
        pids.lookup("warp_speed")


def test_supported_pid_maps() -> None:
    # 0xBE1FA813: the classic example map of PID 0x00.
    found = pids.supported_pids([b"\x41\x00\xbe\x1f\xa8\x13"])
    assert found == {0x01, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0C, 0x0D, 0x0E, 0x0F, 0x10,
                     0x11, 0x13, 0x15, 0x1C, 0x1F, 0x20}  # fmt: skip
    assert pids.supported_pids([b"\x41\x20\x00\x00\x00\x01"]) == {0x40}
    with pytest.raises(DecodeError):
        pids.supported_pids([b"\x41\x0c\x00\x00\x00\x00"])


@pytest.mark.parametrize(
    ("high", "low", "text"),
    [
        (0x01, 0x33, "P0133"),
        (0x41, 0x23, "C0123"),
        (0x92, 0x34, "B1234"),
        (0xC1, 0x00, "U0100"),
        (0x3F, 0xFF, "P3FFF"),
    ],
)
def test_trouble_codes_in_p_c_b_u_notation(high: int, low: int, text: str) -> None:
    assert dtc.dtc_text(high, low) == text


def test_a_mode_03_answer_lists_its_codes_and_skips_padding() -> None:
    assert dtc.decode_dtcs(b"\x43\x02\x01\x33\xc1\x00") == ["P0133", "U0100"]
    assert dtc.decode_dtcs(b"\x43\x00") == []
    assert dtc.decode_dtcs(b"\x43\x02\x01\x33\x00\x00") == ["P0133"]
    with pytest.raises(DecodeError):
        dtc.decode_dtcs(b"\x43\x03\x01\x33")


def test_the_vin() -> None:
    assert dtc.decode_vin(b"\x49\x02\x01WP0ZZZ99ZTS392124") == "WP0ZZZ99ZTS392124"
    for bad in (b"\x49\x02\x01WP0ZZZ", b"\x49\x02\x01WP0ZZZ99ZTS39212!", b"\x41\x02\x01"):
        with pytest.raises(DecodeError):
            dtc.decode_vin(bad)


def test_every_pid_has_a_record_type_of_its_own() -> None:
    assert len(pids.BY_RECORD) == len(pids.BY_PID)


@pytest.mark.parametrize(
    ("voltage", "level", "state"),
    [
        (15.4, 100, "overcharging"),  # the seed's example
        (14.1, 100, "charging"),  # the alternator at work
        (13.2, 100, "charging_slow"),
        (12.7, 100, "discharging"),  # full, at rest
        (12.3, 50, "discharging"),  # (12.3 - 11.9) / (12.7 - 11.9)
        (11.95, 6, "critical_level"),
        (11.2, 0, "critical_level"),
    ],
)
def test_the_battery_level_and_state_from_its_voltage(
    voltage: float, level: int, state: str
) -> None:
    assert pids.BY_PID[0x42].fields(voltage) == {"voltage": voltage, "level": level, "state": state}
