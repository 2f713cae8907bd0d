"""`state.sls`: the two states the Local API document applies, each managing one rendered
file under `<state dir>/rendered/` (docs/device-commands.md, "state.sls").

Each state behaves like salt's `file.managed`: the file is rendered, compared with what is
there, and replaced atomically only when it differs. The answer has salt's state shape,
keyed ``file_|-<id>_|-<path>_|-managed``, with `result`, `comment` and `changes` (a unified
diff, "New file", or nothing when the file was already right). A state whose input cannot
be rendered fails (`result: false`, the reason in `comment`) and leaves the file alone.
Secrets (passphrases, the APN password, the PIN) never appear in a diff.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from device_agent.commands.apn import ApnSettings
from device_agent.commands.errors import CommandError, CommandUnavailable
from device_agent.commands.grains import GrainStore, get
from device_agent.commands.qmi import render_qmi_network
from device_agent.commands.settings import CommandSettings, StatePaths
from device_agent.commands.wpa import NETWORKS_GRAIN, RenderError, render_wpa_supplicant
from device_agent.state_files import StateFileError, read_text, write_atomically

__all__ = ["SLS", "States"]

WLAN_SLS = "network.wlan.client.config"
QMI_SLS = "network.wwan.qmi.config"
#: Rendered files hold secrets: owner-only.
FILE_MODE = 0o600


@dataclass(frozen=True)
class ManagedFile:
    """One state: the file it manages, how to render it, which lines are secret."""

    state_id: str
    filename: str
    render: Callable[[States], str]
    secret_lines: re.Pattern[str]


def _render_wlan(states: States) -> str:
    networks = get(states.grains.read(), NETWORKS_GRAIN, None)
    return render_wpa_supplicant(
        networks,
        country=states.settings.wifi_country,
        ctrl_interface=states.settings.wpa_ctrl_interface,
    )


def _render_qmi(states: States) -> str:
    return render_qmi_network(states.apn.get())


#: The sls names `state.sls` knows, and the file each one manages.
SLS: dict[str, ManagedFile] = {
    WLAN_SLS: ManagedFile(
        "wpa_supplicant_config", "wpa_supplicant.conf", _render_wlan,
        re.compile(r"^(\s*psk=).*$"),
    ),
    QMI_SLS: ManagedFile(
        "qmi_network_config", "qmi-network.conf", _render_qmi,
        re.compile(r"^((?:APN_PASS|PIN)=).*$"),
    ),
}  # fmt: skip


class States:
    """Applies sls by name. Synchronous (it reads and fsyncs files): run it in a thread."""

    def __init__(
        self, paths: StatePaths, settings: CommandSettings, grains: GrainStore, apn: ApnSettings
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.grains = grains
        self.apn = apn
        self._lock = threading.Lock()

    def apply(self, mods: Sequence[str], test: bool) -> dict[str, Any]:
        """salt's `state.sls mods`: every state of every sls, in order, in one answer.

        An unknown sls raises CommandError with salt's wording; nothing is applied then.
        """
        for mod in mods:
            if mod not in SLS:
                raise CommandError(f"No matching sls found for '{mod}' in env 'base'")
        answer: dict[str, Any] = {}
        with self._lock:
            for run_num, mod in enumerate(mods):
                key, entry = self._managed(mod, SLS[mod], run_num, test)
                answer[key] = entry
        return answer

    def _managed(
        self, sls: str, state: ManagedFile, run_num: int, test: bool
    ) -> tuple[str, dict[str, Any]]:
        path = self.paths.rendered / state.filename
        started = datetime.now()  # salt reports start_time in the minion's local time
        clock = time.monotonic()
        result: bool | None
        changes: dict[str, Any] = {}
        try:
            text = state.render(self)
        except RenderError as exc:
            result, comment = False, f"Unable to manage file: {exc}"
        else:
            result, comment = self._converge(path, text, state.secret_lines, test, changes)
        key = f"file_|-{state.state_id}_|-{path}_|-managed"
        return key, {
            "__id__": state.state_id,
            "__run_num__": run_num,
            "__sls__": sls,
            "changes": changes,
            "comment": comment,
            "duration": round((time.monotonic() - clock) * 1000, 3),
            "name": str(path),
            "result": result,
            "start_time": started.time().isoformat(),
        }

    def _converge(
        self, path: Path, text: str, secrets: re.Pattern[str], test: bool, changes: dict[str, Any]
    ) -> tuple[bool | None, str]:
        """Make `path` hold `text` (owner-only); fill `changes`; return (result, comment)."""
        try:
            current = read_text(path)
        except StateFileError as exc:
            raise CommandUnavailable(str(exc)) from exc
        if current != text:
            changes["diff"] = "New file" if current is None else _diff(current, text, secrets)
        elif _mode(path) != FILE_MODE:
            changes["mode"] = f"{FILE_MODE:04o}"
        if not changes:
            return True, f"File {path} is in the correct state"
        if test:
            return None, f"The file {path} is set to be changed"
        try:
            write_atomically(path, text.encode("utf-8"), FILE_MODE)
        except OSError as exc:
            raise CommandUnavailable(f"cannot write {path}: {exc}") from exc
        return True, f"File {path} updated"


def _diff(old: str, new: str, secrets: re.Pattern[str]) -> str:
    """A unified diff as salt shows it, with the value of every secret line hidden."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), fromfile="", tofile=""
    )
    shown = []
    for line in lines:
        body = line[1:] if line[:1] in "+- " and not line.startswith(("---", "+++")) else None
        if body is not None and secrets.match(body.rstrip("\n")):
            line = line[:1] + secrets.sub(r"\1<hidden>", body.rstrip("\n")) + "\n"
        shown.append(line)
    return "".join(shown)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def parse_mods(mods: Any) -> list[str]:
    """salt's `mods`: one name, a comma-separated string of names, or a list of names."""
    if isinstance(mods, str):
        names = [name.strip() for name in mods.split(",")]
    elif isinstance(mods, list) and all(isinstance(name, str) for name in mods):
        names = [name.strip() for name in mods]
    else:
        raise CommandError("state.sls: mods must be an sls name or a list of names")
    if not names or not all(names):
        raise CommandError("state.sls: mods must name at least one sls, without empty names")
    return names
