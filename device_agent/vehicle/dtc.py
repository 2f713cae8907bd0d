"""Diagnostic trouble codes (OBD-II mode 03) and the VIN (mode 09 PID 02), decoded.

A mode 03 answer is `0x43`, on CAN a count byte, then two bytes per stored code. The first
two bits of a code name its system — P (powertrain), C (chassis), B (body), U (network) —
and the other fourteen are four more digits: `0x01 0x33` is `P0133` (docs/vehicle.md,
"Decoding"). Pairs of zero bytes are padding, not codes.
"""

from __future__ import annotations

from device_agent.vehicle.pids import DecodeError

__all__ = ["decode_dtcs", "decode_vin", "dtc_text"]

MODE_DTCS = 0x03
MODE_VEHICLE_INFO = 0x09
PID_VIN = 0x02
_SYSTEMS = "PCBU"
VIN_LENGTH = 17


def dtc_text(high: int, low: int) -> str:
    """Two bytes of a code as its text: `0x01, 0x33` → `P0133`, `0xC1, 0x00` → `U0100`."""
    system = _SYSTEMS[high >> 6]
    return f"{system}{(high >> 4) & 0x3}{high & 0xF:X}{low >> 4:X}{low & 0xF:X}"


def decode_dtcs(answer: bytes) -> list[str]:
    """A mode 03 answer (`0x43 count code…`) as the stored codes, in order."""
    if not answer or answer[0] != MODE_DTCS + 0x40:
        raise DecodeError(f"not a mode 03 answer: {answer.hex()}")
    if len(answer) < 2:
        raise DecodeError("a mode 03 answer without its count")
    count, body = answer[1], answer[2:]
    if len(body) < 2 * count:
        raise DecodeError(f"{count} codes announced, {len(body) // 2} sent")
    pairs = [(body[i], body[i + 1]) for i in range(0, 2 * count, 2)]
    return [dtc_text(high, low) for high, low in pairs if (high, low) != (0, 0)]


def decode_vin(answer: bytes) -> str:
    """A mode 09 PID 02 answer (`0x49 0x02 count` and 17 ASCII characters) as the VIN."""
    if len(answer) < 3 or answer[0] != MODE_VEHICLE_INFO + 0x40 or answer[1] != PID_VIN:
        raise DecodeError(f"not a VIN answer: {answer[:8].hex()}")
    text = answer[3:].rstrip(b"\x00")
    if len(text) != VIN_LENGTH or not text.isascii() or not text.isalnum():
        raise DecodeError(f"a VIN is 17 letters and digits, got {text!r}")
    return text.decode("ascii")
