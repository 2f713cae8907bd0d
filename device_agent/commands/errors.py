"""What a salt-style command can fail with, in one place (docs/device-side.md, "Commands").

Every face that runs commands maps these the same way: the Local API on the device
(`{"error": "..."}`) and the cloud's relay over the link. The status each one stands for is
named here, so that both faces answer a bad command alike.
"""

from __future__ import annotations

__all__ = ["CommandBadAnswer", "CommandError", "CommandTimeout", "CommandUnavailable"]


class CommandError(Exception):
    """The caller's mistake: an unknown command, arguments of the wrong shape or type, a
    command disabled or restricted by configuration. HTTP 400 with the message."""

    status = 400


class CommandTimeout(CommandError):
    """The command outlived its timeout and was stopped. HTTP 504 with the message."""

    status = 504


class CommandUnavailable(CommandError):
    """The device cannot run it now (a state file it needs cannot be written, say), though
    the request was right. HTTP 503 with the message."""

    status = 503


class CommandBadAnswer(CommandError):
    """What the command asked answered with something it cannot use (an ECU's answer that
    does not decode): neither the caller's mistake nor the device's. HTTP 502."""

    status = 502
