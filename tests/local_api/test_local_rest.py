"""Every documented Local API request through the real device gateway, and its refusals."""

from __future__ import annotations

import os

import httpx
import pytest

from device_agent.local_service import UNIT_MISMATCH
from tests.local_api.conftest import PASSWORD, UNIT_ID, RunningLocalApi

pytestmark = pytest.mark.integration

OTHER_UNIT = "00000000-0000-4000-8000-000000000000"


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert not [name for name in response.headers if name.startswith(("grpc-", "x-thingwire"))]
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    return body["error"]


def test_login_answers_the_documented_user(
    client: httpx.Client, local_api: RunningLocalApi
) -> None:
    for path in ("/auth/login/", "/auth/login"):
        response = client.post(path)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "token": local_api.identity.token,
            "user": {
                "pk": 0,
                "username": "local user",
                "has_devices": True,
                "is_local": True,
                "devices": [{"unit_id": UNIT_ID, "display": "Local device"}],
                "timezone": "UTC",
            },
        }


def test_root_and_device_list(client: httpx.Client) -> None:
    assert client.get("/").json() == {"unit_id": UNIT_ID}
    for path in ("/dongle/devices/", "/dongle/devices"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == [{"unit_id": UNIT_ID, "display": "Local device"}]


def test_download_log_serves_the_agents_logs(client: httpx.Client) -> None:
    response = client.get("/download_log/", params={"file": "syslog"})
    assert response.status_code == 200, response.text
    assert response.text == "line one\nline two\n"
    assert response.headers["content-type"].startswith("text/plain")
    assert 'filename="syslog"' in response.headers["content-disposition"]
    assert client.get("/download_log/?file=salt/minion").text == "minion says hello\n"
    assert client.get("/download_log/?file=salt%2Fminion").text == "minion says hello\n"


@pytest.mark.parametrize(
    "name",
    [
        "../minion_id",
        "..%2Fminion_id",
        "%2E%2E/minion_id",
        "salt/../../minion_id",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "salt/./minion",
        "salt//minion",
        "salt\\minion",
        "syslog%00",
        "",
        "salt",
    ],
)
def test_download_log_never_leaves_the_log_directory(client: httpx.Client, name: str) -> None:
    message = error_of(client.get(f"/download_log/?file={name}"), 400)
    assert "root:" not in message


def test_download_log_refuses_symbolic_links(
    client: httpx.Client, local_api: RunningLocalApi
) -> None:
    outside = local_api.log_dir.parent / "secret.txt"
    outside.write_text("TOP SECRET CONTENT\n")
    (local_api.log_dir / "link").symlink_to(outside)
    (local_api.log_dir / "dirlink").symlink_to(local_api.log_dir.parent, target_is_directory=True)
    (local_api.log_dir / "inside").symlink_to(local_api.log_dir / "syslog")
    for name in ("link", "dirlink/secret.txt", "inside"):
        response = client.get("/download_log/", params={"file": name})
        error_of(response, 400)
        assert "TOP SECRET" not in response.text


def test_download_log_of_a_missing_file_is_404(client: httpx.Client) -> None:
    error_of(client.get("/download_log/?file=kern.log"), 404)


def test_execute_runs_the_command_and_answers_its_result(
    client: httpx.Client, local_api: RunningLocalApi
) -> None:
    body = {"command": "cmd.run", "arg": ["ls", "-l"], "kwarg": {}}
    response = client.post(f"/dongle/{UNIT_ID}/execute/", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == "ls -l"
    assert local_api.commands.calls[-1] == ("cmd.run", (["ls", "-l"], {}))
    ping = client.post(f"/dongle/{UNIT_ID}/execute", json={"command": "test.ping"})
    assert ping.json() is True
    salt_list = client.post(f"/dongle/{UNIT_ID}/execute/", json=["test.ping"])
    assert salt_list.json() is True


def test_execute_raw_hands_the_line_over(client: httpx.Client, local_api: RunningLocalApi) -> None:
    response = client.post(f"/dongle/{UNIT_ID}/execute_raw/", json={"command": "cmd.run ls -l"})
    assert response.status_code == 200, response.text
    assert response.json() == "ls -l"
    assert local_api.commands.calls[-2] == ("raw", "cmd.run ls -l")


@pytest.mark.parametrize(
    "path", ["execute/", "execute_raw/", "settings/apn/"], ids=["execute", "raw", "apn"]
)
def test_a_wrong_unit_id_is_refused_with_the_documented_message(
    client: httpx.Client, path: str
) -> None:
    url = f"/dongle/{OTHER_UNIT}/{path}"
    response = client.get(url) if path.startswith("settings") else client.post(url, json={})
    assert error_of(response, 400) == UNIT_MISMATCH


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("execute/", b"{not json"),
        ("execute/", b'{"command": 5}'),
        ("execute/", b'{"command": "test.ping", "kwarg": []}'),
        ("execute/", b'{"command": "test.ping", "extra": 1}'),
        ("execute/", b'"test.ping"'),
        ("execute/", b"[]"),
        ("execute_raw/", b'{"command": ["cmd.run"]}'),
        ("execute_raw/", b'{"command": "  "}'),
        ("execute_raw/", b'{"command": "cmd.run ls", "arg": []}'),
        ("execute/", b"\xff\xfe"),
    ],
)
def test_malformed_command_bodies_are_400(client: httpx.Client, path: str, body: bytes) -> None:
    response = client.post(
        f"/dongle/{UNIT_ID}/{path}", content=body, headers={"content-type": "application/json"}
    )
    error_of(response, 400)


def test_command_errors_keep_their_status(client: httpx.Client) -> None:
    unknown = client.post(f"/dongle/{UNIT_ID}/execute/", json={"command": "foo.bar"})
    assert error_of(unknown, 400) == "'foo.bar' is not available."
    slow = client.post(f"/dongle/{UNIT_ID}/execute/", json={"command": "slow.run"})
    assert "stopped" in error_of(slow, 504)


def test_apn_settings_round_trip(client: httpx.Client) -> None:
    url = f"/dongle/{UNIT_ID}/settings/apn/"
    wanted = {"apn": "internet", "user": "user", "pass": "pass", "pin": "0000", "mtu": 1280}
    response = client.put(url, json=wanted)
    assert response.status_code == 200, response.text
    assert response.json() == wanted
    assert client.get(url).json() == wanted
    assert list(client.get(url).json()) == ["apn", "user", "pass", "pin", "mtu"]
    assert error_of(client.put(url, json={"apn": "x", "dns": "1.1.1.1"}), 400)
    assert error_of(
        client.put(url, content=b"[", headers={"content-type": "application/json"}), 400
    )


def test_unknown_paths_and_methods_answer_json_errors(client: httpx.Client) -> None:
    error_of(client.get("/nothing/here/"), 404)
    assert client.delete(f"/dongle/{UNIT_ID}/settings/apn/").status_code in (404, 405)


def test_an_oversized_body_is_413(client: httpx.Client) -> None:
    big = b'{"command": "cmd.run", "arg": ["' + b"x" * (2 * 1024 * 1024) + b'"]}'
    response = client.post(
        f"/dongle/{UNIT_ID}/execute/", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_with_a_password_login_checks_it_and_the_rest_wants_the_token(
    locked_api: RunningLocalApi,
) -> None:
    with httpx.Client(base_url=locked_api.base_url, timeout=15) as http:
        error_of(http.post("/auth/login/"), 401)
        error_of(http.post("/auth/login/", json={"password": "wrong"}), 401)
        error_of(http.post("/auth/login/", json={"password": 5}), 401)
        error_of(http.get("/"), 401)
        error_of(http.get("/", headers={"authorization": "Bearer not-the-token"}), 401)
        error_of(http.get("/download_log/?file=syslog"), 401)
        error_of(http.post(f"/dongle/{UNIT_ID}/execute/", json={"command": "test.ping"}), 401)
        login = http.post("/auth/login/", json={"password": PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        assert token == locked_api.identity.token
        authorized = {"authorization": f"Bearer {token}"}
        assert http.get("/", headers=authorized).json() == {"unit_id": UNIT_ID}
        ping = http.post(
            f"/dongle/{UNIT_ID}/execute/", json={"command": "test.ping"}, headers=authorized
        )
        assert ping.json() is True


def test_the_socket_and_key_are_owner_only(local_api: RunningLocalApi) -> None:
    state_dir = local_api.log_dir.parent
    assert os.stat(state_dir / "local-api" / "local.sock").st_mode & 0o077 == 0
    assert os.stat(state_dir / "local_api.key").st_mode & 0o077 == 0
