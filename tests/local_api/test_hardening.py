"""What an audit of the device's Local API found, each kept as a test of its fix: tokens
that outlive a new password, foreign web pages (DNS rebinding, cross-site posts), a FIFO
among the logs, the gateway cutting long commands, guessing, short keys, secrets handed to
commands, values that are not JSON, a query parameter overriding the path's unit id, UUID
spellings, processes outliving a timeout, download names.

Every test runs the real LocalService behind its real device gateway (Envoy), with the real
command registry and APN settings under a temporary state directory, except where a test
says it checks the configuration or the identity module directly. The docstring of each
test says what was wrong before its fix, why it matters, and what is expected now.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from device_agent.commands import ApnSettings, Commands, CommandSettings
from device_agent.commands.settings import DEFAULT_CMD_TIMEOUT_S, MAX_CMD_TIMEOUT_S
from device_agent.local_api import LocalApi
from device_agent.local_identity import KEY_FILE, load_identity
from device_agent.local_service import LocalServicer
from tests.support import LoopThread, free_ports

UNIT_ID = "5b0e1f6a-2a1c-4f5e-8d2b-7d3c9e6a1f00"
PASSWORD = "audit-password-1"


@dataclass
class Running:
    api: LocalApi
    base_url: str
    state_dir: Path


def start_api(loop: LoopThread, state_dir: Path, password: str | None = None) -> Running:
    """A Local API as `thingwire agent` builds it (cli.build_local_api), on free ports."""
    log_dir = state_dir / "log"
    (log_dir / "salt").mkdir(parents=True, exist_ok=True)
    (log_dir / "syslog").write_text("line one\n")
    apn = ApnSettings(state_dir)
    commands = Commands(state_dir, CommandSettings(), apn)
    servicer = LocalServicer(
        load_identity(state_dir, UNIT_ID, password),
        log_dir=log_dir,
        commands=commands,
        apn=apn,
        password=password,
    )
    port, admin = free_ports(2)
    api = LocalApi(servicer, state_dir=state_dir, port=port, admin_port=admin)
    loop.run(api.start())
    return Running(api, f"http://127.0.0.1:{port}", state_dir)


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def open_api(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    running = start_api(loop_thread, tmp_path_factory.mktemp("open"))
    yield running
    loop_thread.run(running.api.stop())


@pytest.fixture
def client(open_api: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_api.base_url, timeout=15) as http:
        yield http


def execute(client: httpx.Client, body: object) -> httpx.Response:
    return client.post(f"/dongle/{UNIT_ID}/execute/", json=body)


def assert_error_shape(response: httpx.Response) -> None:
    """The Local API's contract: every error is a 4xx with {"error": "..."} (never a 500)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str), body
    assert body["error"], body


# 1. Access control ------------------------------------------------------------------------


def test_a_token_handed_out_without_a_password_stops_working_once_a_password_is_set(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    """The token does not depend on the password, so setting one locks nobody out.

    What: the token is HMAC(key in local_api.key, a fixed text)
    (device_agent/local_identity.py, LocalIdentity.__init__); the password is never part
    of it. While the Local API has no password (the default), `POST /auth/login/` hands the
    token to anyone who asks. When the operator then sets THINGWIRE_AGENT_LOCAL_PASSWORD
    (because the device was exposed), every token already handed out keeps working, and
    so does one obtained under an old password after the password is changed.
    Why it matters: the password is the only guard in front of `cmd.run` (root on a real
    device); setting or changing it is the operator's way to shut people out, and it does
    not. docs/device-side.md, "Access", presents the password as that guard and names only
    deleting the key file as a way to withdraw tokens.
    Expected: after a restart with a password, the open-mode token is refused (401).
    Actual: 200, and `cmd.run` runs with it.
    """
    state_dir = tmp_path / "agent"
    before = start_api(loop_thread, state_dir)
    try:
        token = httpx.post(before.base_url + "/auth/login/", timeout=10).json()["token"]
    finally:
        loop_thread.run(before.api.stop())
    after = start_api(loop_thread, state_dir, password=PASSWORD)
    try:
        answer = httpx.get(
            after.base_url + "/", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert answer.status_code == 401, (
            "a token obtained with no password set still opens the Local API after the "
            f"password was set: {answer.status_code} {answer.text}"
        )
    finally:
        loop_thread.run(after.api.stop())


def test_an_empty_key_file_does_not_give_a_token_anyone_can_compute(tmp_path: Path) -> None:
    """An empty (or very short) `local_api.key` is used as the HMAC key as it is.

    What: load_identity (device_agent/local_identity.py) only creates a key when the file
    is missing; an existing file's text is `bytes.fromhex(...)`'d without a length check,
    so an empty file (made by provisioning, `touch`, a restore of an empty backup) gives
    the key b"" and a token that anybody can compute offline from the public fixed text.
    Why it matters: with a password set, that token passes every endpoint without login.
    Expected: a key shorter than 32 bytes is refused (ValueError) or replaced.
    Actual: the predictable token is accepted.
    """
    (tmp_path / KEY_FILE).write_text("")
    try:
        identity = load_identity(tmp_path, UNIT_ID)
    except ValueError:
        return  # refusing the file is a fine answer
    predictable = (
        base64.urlsafe_b64encode(
            hmac.new(b"", b"thingwire local api: local user", hashlib.sha256).digest()
        )
        .decode()
        .rstrip("=")
    )
    assert not identity.token_matches(predictable), "the token is HMAC under an empty key"


def test_login_slows_down_or_refuses_after_many_wrong_passwords(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    """Password guessing is not limited in any way.

    What: `Login` (device_agent/local_service.py) compares the password in constant time
    but answers every wrong guess at once, for ever; one client on the hotspot makes ~85
    guesses a second with curl in a loop (300 in 3.5 s measured against a real agent).
    Why it matters: the password guards `cmd.run` (root); a short, human-chosen hotspot
    password falls to an online guess.
    Expected: after some wrong passwords (here 30) further attempts are delayed or
    refused (429) for a while, even with the right password.
    Actual: all 30 are answered at once with 401, and the 31st (right) one logs in.
    """
    running = start_api(loop_thread, tmp_path / "locked", password=PASSWORD)
    try:
        with httpx.Client(base_url=running.base_url, timeout=10) as http:
            started = time.monotonic()
            for attempt in range(30):
                answer = http.post("/auth/login/", json={"password": f"guess-{attempt}"})
                assert answer.status_code in (401, 429)
            elapsed = time.monotonic() - started
            last = http.post("/auth/login/", json={"password": PASSWORD})
        assert last.status_code == 429 or elapsed > 10, (
            f"30 wrong passwords answered in {elapsed:.2f} s, and then the right one "
            f"logged in ({last.status_code}): guessing is not limited"
        )
    finally:
        loop_thread.run(running.api.stop())


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "rebind.attacker.example:9000"},
        {"origin": "http://attacker.example", "content-type": "text/plain"},
    ],
    ids=["dns-rebinding-host", "cross-site-text-plain"],
)
def test_requests_from_foreign_web_pages_do_not_reach_cmd_run(
    client: httpx.Client, open_api: Running, headers: dict[str, str]
) -> None:
    """Any web page a browser on the device's network opens can drive `cmd.run`.

    What: the device gateway (gateway/config.py device_spec, gateway/filters.lua) accepts
    any Host header and any Origin, and the LocalService parses a `text/plain` body as
    JSON. So (a) DNS rebinding: a page on attacker.example whose name re-resolves to the
    device's address is same-origin with the Local API; it reads `GET /` (the unit id) and
    then POSTs `execute/`; (b) a cross-site `fetch(..., {method: "POST", mode: "no-cors",
    body: '{"command":"cmd.run",...}'})` is a CORS "simple request" (text/plain, no
    preflight) that the browser sends as it is; only the unit id stands in the way.
    Why it matters: with no password (the default) `cmd.run` is enabled and runs as the
    agent's user (root on a dongle); a phone on the hotspot that opens a link is enough.
    Expected: a Host that is not the device's address/name (or localhost), or a foreign
    Origin, is refused (403/421) before any command runs.
    Actual: 200, and the command ran (a marker file appears).
    """
    marker = open_api.state_dir / f"pwned-{len(headers)}-{sorted(headers)[0]}"
    response = client.post(
        f"/dongle/{UNIT_ID}/execute/",
        content=f'{{"command": "cmd.run", "arg": ["touch", "{marker}"]}}',
        headers=headers,
    )
    assert not marker.exists(), f"the command ran: {response.status_code} {response.text}"
    assert response.status_code in (400, 403, 421), response.text


# 2. Availability ------------------------------------------------------------------------


def test_a_fifo_in_the_log_directory_does_not_freeze_the_agent(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    """`/download_log/?file=<a FIFO>` blocks the agent's whole event loop.

    What: read_log (device_agent/local_logs.py, _open_inside) opens the last component
    with O_RDONLY and no O_NONBLOCK, and only then checks S_ISREG with fstat; opening a
    FIFO blocks until a writer appears. DownloadLog (device_agent/local_service.py) calls
    read_log directly on the event loop, not in a thread, so every rpc (and the agent's
    cloud link, which shares the loop) stops. Envoy answers the waiting calls with its own
    504 after 30 s and then ejects the upstream (503 "Service Unavailable") for a while.
    Why it matters: syslog daemons commonly log to named pipes; one request (any client on
    port 9000) takes the agent down until somebody writes to the pipe.
    Expected: 400 "not a log file of this device" at once; other endpoints keep answering.
    Actual: the download hangs, and so does `GET /`.
    Reproduce: `mkfifo <state>/log/fifo; curl 'http://127.0.0.1:9000/download_log/?file=fifo'`
    then `curl http://127.0.0.1:9000/` from a second shell.
    """
    running = start_api(loop_thread, tmp_path / "agent")
    fifo = running.state_dir / "log" / "fifo"
    os.mkfifo(fifo)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        download = pool.submit(httpx.get, running.base_url + "/download_log/?file=fifo", timeout=8)
        time.sleep(0.5)
        try:
            unit = httpx.get(running.base_url + "/", timeout=3)
        except httpx.TimeoutException:
            pytest.fail("GET / did not answer while a download of a FIFO was pending")
        assert unit.status_code == 200
        answer = download.result(timeout=10)
        assert answer.status_code == 400, answer.text
    finally:
        # Release the open blocked in the agent (give it a writer), then stop this API.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                break
            except OSError:
                time.sleep(0.1)
        fifo.unlink()
        pool.shutdown(wait=True, cancel_futures=True)
        loop_thread.run(running.api.stop())


def test_the_device_gateway_waits_as_long_as_cmd_run_may_run(open_api: Running) -> None:
    """The gateway cuts a `cmd.run` long before the command's own timeout.

    What: the device gateway uses the cloud's REST timeouts (gateway/config.py,
    GatewaySpec: rest_idle_timeout_s=30, unary_timeout_s=60; device_spec overrides
    neither, nor does device_agent/local_api.py). `cmd.run` takes `timeout` up to 600 s
    (docs/device-commands.md) and defaults to 30 s (THINGWIRE_AGENT_CMD_TIMEOUT).
    Why it matters: (a) any command longer than 30 s answers Envoy's
    `{"error": "gateway timeout: the thingwire server did not answer in time"}` (504) and
    is killed, whatever `timeout` says; (b) with the default 30 s the command's own
    timeout races the gateway's, so the documented answer ("Timed out after 30 seconds:
    'sleep' was stopped") is never seen either.
    Measured against a real agent: `{"command":"cmd.run","arg":["sleep 45; echo done"],
    "kwarg":{"timeout":100,"python_shell":true}}` and `{"command":"cmd.run","arg":
    ["sleep 100"]}` both answered the gateway's 504 after exactly 30.02 s.
    Expected: the gateway's idle and route timeouts exceed the longest cmd.run timeout
    (MAX_CMD_TIMEOUT_S), or at least the default, with a margin.
    Actual: 30 s and 60 s.
    """
    spec = open_api.api.envoy.spec
    limits = {"idle": spec.rest_idle_timeout_s, "route": spec.unary_timeout_s}
    assert min(limits.values()) > DEFAULT_CMD_TIMEOUT_S, limits
    assert min(limits.values()) > MAX_CMD_TIMEOUT_S, limits


# 3. Error shapes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"command": "test.echo", "arg": [NaN]}',
        '{"command": "test.echo", "arg": [Infinity]}',
        '{"command": "test.echo", "arg": [1e400]}',
        '{"command": "test.echo", "arg": ["\\ud800"]}',
    ],
    ids=["NaN", "Infinity", "1e400", "lone-surrogate"],
)
def test_values_that_are_not_json_answer_400_not_500(client: httpx.Client, body: str) -> None:
    """NaN, Infinity, an overflowing number or a lone surrogate in a body give a 500.

    What: _parsed (device_agent/local_service.py) uses json.loads, which accepts NaN and
    Infinity, turns 1e400 into inf and "\\ud800" into a lone surrogate; the command
    echoes it back and json_body then fails (allow_nan=False raises ValueError; encode()
    raises UnicodeEncodeError). Neither is a LocalError, so the call ends as
    `{"error": "internal error"}` with 500.
    Why it matters: the contract is `{"error": "..."}` with a 4xx for a bad request; a 500
    says the device is broken. The same holds for any command whose answer carries them.
    Expected: 400. Actual: 500.
    """
    response = client.post(
        f"/dongle/{UNIT_ID}/execute/", content=body, headers={"content-type": "application/json"}
    )
    assert_error_shape(response)


def test_execute_raw_keeps_an_overflowing_number_as_text(client: httpx.Client) -> None:
    """`execute_raw` turns the word 1e400 into inf and then answers 500.

    What: parse_value (device_agent/commands/raw.py) refuses NaN and Infinity (they
    "stay text", docs/device-commands.md, "execute_raw") but json.loads("1e400") is inf
    without any constant, so `{"command": "test.echo 1e400"}` echoes inf, which json_body
    cannot write: 500 "internal error".
    Expected: "1e400" (the text, as NaN and Infinity are) or a 400. Actual: 500.
    """
    response = client.post(f"/dongle/{UNIT_ID}/execute_raw/", json={"command": "test.echo 1e400"})
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    if response.status_code == 200:
        assert response.json() == "1e400"


# 4. The unit id check -------------------------------------------------------------------


def test_the_unit_id_checked_is_the_one_in_the_path(client: httpx.Client) -> None:
    """A `?unit_id=` query parameter replaces the path's unit id before the check.

    What: the transcoder binds query parameters onto request fields, and the path's
    `{unit_id}` and `?unit_id=` are the same field; the query wins. So
    `POST /dongle/<another device>/execute/?unit_id=<this device>` runs here, and
    `POST /dongle/<this device>/execute/?unit_id=x` is refused as a mismatch.
    Why it matters: the document's reason for the unit id in the path is to make sure a
    request "is actually meant for that specific device"; the device now acts on a path
    that names another one (gateway/config.py transcoder options, gateway/filters.lua,
    device_agent/local_service.py _check_unit).
    Expected: the path alone decides: 400 mismatch for the first, 200 for the second.
    Actual: 200 for the first, 400 for the second.
    """
    other = "00000000-0000-4000-8000-000000000000"
    wrong_path = client.post(
        f"/dongle/{other}/execute/?unit_id={UNIT_ID}", json={"command": "test.ping"}
    )
    right_path = client.post(f"/dongle/{UNIT_ID}/execute/?unit_id=x", json={"command": "test.ping"})
    assert (wrong_path.status_code, right_path.status_code) == (400, 200), (
        wrong_path.text,
        right_path.text,
    )


@pytest.mark.parametrize(
    "variant",
    [UNIT_ID.upper()],
    ids=["upper"],
)
def test_the_same_uuid_written_differently_is_this_device(
    client: httpx.Client, variant: str
) -> None:
    """Another spelling of this device's own UUID is told it "does not match".

    What: load_identity canonicalises the configured id with uuid.UUID (an operator may
    give `--unit-id 5B0E1F6A-...`, and that is what they will then put in the path), but
    _check_unit (device_agent/local_service.py) compares the path's text literally, so
    the upper-case form of the very id given on the command line is answered
    "unit_id does not match the id configured on this device", which is not true.
    RFC 4122 makes UUIDs case-insensitive on input.
    Expected: 200 for the same UUID in another spelling (at least the upper-case one).
    Actual: 400 with the mismatch text.
    """
    response = client.post(f"/dongle/{variant}/execute/", json={"command": "test.ping"})
    assert response.status_code == 200, response.text


# 5. Secrets ------------------------------------------------------------------------------


def test_cmd_run_does_not_hand_the_local_api_password_to_the_programs_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every program `cmd.run` starts inherits THINGWIRE_AGENT_LOCAL_PASSWORD.

    What: cmdrun.run (device_agent/commands/cmdrun.py) passes no `env`, so the child gets
    the agent's whole environment, the Local API password included (config.py reads it
    from there). With `THINGWIRE_AGENT_CMD_RUN=cat` (a plausible allow-list),
    `cmd.run cat /proc/self/environ` prints it; so does any program that logs its
    environment, and the cloud's relay shows it to the device's cloud owner.
    Expected: the password (and other THINGWIRE_AGENT_* secrets) are not in the child's
    environment. Actual: `cmd.run env` prints `THINGWIRE_AGENT_LOCAL_PASSWORD=...`.
    """
    import asyncio

    monkeypatch.setenv("THINGWIRE_AGENT_LOCAL_PASSWORD", "the-secret-password")
    output = asyncio.run(Commands(tmp_path).execute("cmd.run", ["env"], {}))
    assert "the-secret-password" not in output


# 6. Smaller gaps between the docs and the code --------------------------------------------


def test_a_timed_out_command_leaves_nothing_running(tmp_path: Path) -> None:
    """A program that leaves the process group outlives the timeout that "killed" it.

    What: docs/device-commands.md ("cmd.run") and cmdrun.py's docstring promise that when
    a command outlives its timeout "the whole group is killed, so nothing it started is
    left running". _kill_group (device_agent/commands/cmdrun.py) sends SIGKILL to the
    command's process group only; anything that called setsid(2) (`setsid -f`, any
    daemon, `nohup sh -c ... &` from a `python_shell`) keeps running, with the command's
    stdout pipe still open in the agent if it kept it (`cmd.run setsid -f sleep 60` with
    `timeout=1`: asyncio then reports the pipe transport as never closed, one descriptor
    leaked per such command).
    Expected: no process of the command is left after the 504. Actual: `sleep` runs on.
    """
    import asyncio

    from device_agent.commands import CommandTimeout

    marker = "47.1234"
    # The escaped sleep lets go of the output pipe; the group's own `sleep 5` times out.
    line = f"setsid -f sleep {marker} </dev/null >/dev/null 2>&1; sleep 5"
    with pytest.raises(CommandTimeout):
        asyncio.run(Commands(tmp_path).execute("cmd.run", ["sh", "-c", line], {"timeout": 1}))
    time.sleep(0.3)
    survivors = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (proc / "cmdline").read_bytes() == f"sleep\0{marker}\0".encode():
                    survivors.append(int(proc.name))
    for pid in survivors:  # clean up what the test itself started, by its pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    assert not survivors, f"left running after the timeout: pids {survivors}"


@pytest.mark.parametrize("name", ["журнал", 'a"b'])
def test_a_log_with_any_valid_name_downloads_with_a_well_formed_header(
    loop_thread: LoopThread, tmp_path: Path, name: str
) -> None:
    """The content-disposition header is the raw file name between quotes.

    What: DownloadLog (device_agent/local_service.py) sends
    `attachment; filename="<name>"` as gRPC metadata. A non-ASCII name (a log named in
    the device's language) is an illegal metadata value: the call fails with 500
    "internal error" although the file exists and is a regular file inside the log
    directory. A name with `"` gives the malformed header `filename="a"b"`.
    Expected: 200 with a well-formed header (RFC 6266: `filename*=UTF-8''...` for
    non-ASCII, quotes escaped). Actual: 500, resp. an unparsable header.
    """
    running = start_api(loop_thread, tmp_path / "agent")
    try:
        (running.state_dir / "log" / name).write_text("a line\n")
        answer = httpx.get(running.base_url + "/download_log/", params={"file": name}, timeout=10)
        assert answer.status_code == 200, answer.text
        header = answer.headers["content-disposition"]
        bare_quotes = header.count('"') - header.count('\\"')
        assert "filename*=" in header or bare_quotes == 2, header
    finally:
        loop_thread.run(running.api.stop())


# Coverage that passes (kept: not covered elsewhere through the real registry) -------------


def test_restricted_cmd_run_refuses_shells_paths_and_env_indirection(tmp_path: Path) -> None:
    """Restricted mode: only the listed programs, whichever way the command is spelled."""
    import asyncio

    from device_agent.commands import CommandError

    commands = Commands(
        tmp_path, CommandSettings(cmd_run="restricted", cmd_run_allowed=frozenset({"echo"}))
    )
    attempts: list[tuple[list[Any], dict[str, Any]]] = [
        (["sh", "-c", "id"], {}),
        (["/bin/echo hi"], {}),
        (["env echo hi"], {}),
        (["echo hi"], {"python_shell": True}),
        ([], {"cmd": ["id"]}),
        ([{"__kwarg__": True, "cmd": "id"}], {}),
        ([["id"]], {}),
    ]
    for args, kwargs in attempts:
        with pytest.raises(CommandError):
            asyncio.run(commands.execute("cmd.run", args, kwargs))
    with pytest.raises(CommandError):
        asyncio.run(commands.execute_raw("cmd.run_all /usr/bin/id"))
    assert asyncio.run(commands.execute("cmd.run", ["echo $(id); id"], {})) == "$(id); id"


def test_apn_values_cannot_escape_their_quotes_in_the_qmi_profile(
    client: httpx.Client, open_api: Running
) -> None:
    """A user name with quotes and `$(...)` is stored and rendered as one inert assignment."""
    user = "x'$(touch /tmp/pwned)'\"`id`"
    put = client.put(f"/dongle/{UNIT_ID}/settings/apn/", json={"apn": "internet", "user": user})
    assert put.status_code == 200, put.text
    for bad in ({"apn": "internet\nAPN_USER=x"}, {"pass": "a\nb"}, {"pin": "12;3"}):
        assert_error_shape(client.put(f"/dongle/{UNIT_ID}/settings/apn/", json=bad))
    applied = execute(client, {"command": "state.sls", "arg": ["network.wwan.qmi.config"]})
    assert applied.status_code == 200, applied.text
    text = (open_api.state_dir / "rendered" / "qmi-network.conf").read_text()
    line = next(line for line in text.splitlines() if line.startswith("APN_USER="))
    assert line == "APN_USER='x'\\''$(touch /tmp/pwned)'\\''\"`id`'"


def test_wifi_values_cannot_add_directives_to_wpa_supplicant_conf(
    client: httpx.Client, open_api: Running
) -> None:
    """An SSID or passphrase with newlines, quotes or braces adds no line of its own."""
    networks = [
        {"ssid": 'a"\n}\nnetwork={\nssid="evil', "psk": 'pass"word#x', "priority": 2},
        {"ssid": "x y#z", "psk": ""},
    ]
    set_ = execute(
        client,
        {"command": "grains.set", "arg": ["wpa_supplicant:networks", networks],
         "kwarg": {"force": True}},
    )  # fmt: skip
    assert set_.status_code == 200, set_.text
    assert set_.json()["result"] is True, set_.text
    applied = execute(client, {"command": "state.sls", "arg": ["network.wlan.client.config"]})
    assert applied.status_code == 200, applied.text
    text = (open_api.state_dir / "rendered" / "wpa_supplicant.conf").read_text()
    assert text.count("network={") == 2
    assert "ssid=61220a7d0a6e6574776f726b3d7b0a737369643d226576696c" in text
    assert 'ssid="x y#z"' in text
    assert not any(line.startswith("ctrl_interface") for line in text.splitlines()[3:])
    # A passphrase with a newline cannot be rendered: the state fails, the file stays.
    bad = [{"ssid": "x", "psk": 'aaaaaaaa"\nctrl_interface=/tmp/x'}]
    execute(
        client,
        {
            "command": "grains.set",
            "arg": ["wpa_supplicant:networks", bad],
            "kwarg": {"force": True},
        },
    )
    failed = execute(client, {"command": "state.sls", "arg": ["network.wlan.client.config"]})
    (entry,) = failed.json().values()
    assert entry["result"] is False
    assert (open_api.state_dir / "rendered" / "wpa_supplicant.conf").read_text() == text


@pytest.mark.parametrize(
    "query",
    [
        "file=../minion_id",
        "file=%2e%2e/minion_id",
        "file=%2E%2E%2Fminion_id",
        "file=/etc/passwd",
        "file=%2Fetc%2Fpasswd",
        "file=salt/../syslog",
        "file=salt//minion",
        "file=salt%5Cminion",
        "file=sys%00log",
        "file=%C0%AE%C0%AE/minion_id",
        "file=" + "a" * 300,
        "file=salt",
        "file=link",
        "file=linkdir/passwd",
        "file=../minion_id&file=../minion_id",
    ],
)
def test_download_log_never_leaves_the_log_directory(
    client: httpx.Client, open_api: Running, query: str
) -> None:
    """Encoded, absolute, dotted, NUL, overlong-UTF-8, directory and symlink names: 400/404."""
    log_dir = open_api.state_dir / "log"
    with contextlib.suppress(FileExistsError):
        (log_dir / "link").symlink_to("/etc/passwd")
    with contextlib.suppress(FileExistsError):
        (log_dir / "linkdir").symlink_to("/etc")
    response = client.get(f"/download_log/?{query}")
    assert response.status_code in (400, 404), (response.status_code, response.text[:200])
    assert "root:" not in response.text
    assert_error_shape(response)


def test_a_deeply_nested_grain_is_refused_with_400_not_500(client: httpx.Client) -> None:
    """(Last in the file: the RecursionError it provokes upsets CPython 3.11's AST recursion
    counter, which breaks pytest's rendering of failures that come after it.)

    `grains.set` of a value nested a few hundred levels deep gives a 500.

    What: json.loads takes ~990 levels, but grains.set_grain
    (device_agent/commands/grains.py) deep-copies the value (copy.deepcopy recurses ~2
    frames a level) and write_json writes it with indent (the pure-Python encoder);
    RecursionError is neither TypeError nor ValueError, so GrainStore.update does not turn
    it into a CommandError and the call ends as 500 "internal error". 500 levels is a
    2 KB body.
    Expected: 400 naming the problem. Actual: 500.
    """
    value = "[" * 500 + "]" * 500
    body = '{"command": "grains.set", "arg": ["deep", ' + value + '], "kwarg": {"force": true}}'
    response = client.post(
        f"/dongle/{UNIT_ID}/execute/", content=body, headers={"content-type": "application/json"}
    )
    assert_error_shape(response)
