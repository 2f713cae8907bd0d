"""Datacooee organisations, their inputs (``sen…`` series) and assets grouping inputs."""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from server.clock import utc_now
from server.errors import InvalidArgument, NotFound, Unauthenticated
from server.security.hashing import hash_secret, new_secret, secrets_equal
from server.storage._common import paginate, validate_name
from server.storage.models import Asset, Input, Organization

__all__ = [
    "authenticate_org",
    "create_asset",
    "create_input",
    "create_org",
    "get_asset",
    "list_inputs",
    "new_input_id",
    "new_org_id",
]

MAX_NAME_LENGTH = 200
MAX_UNIT_LENGTH = 50
_INPUT_ALPHABET = string.ascii_lowercase + string.digits
# Compared against when the org does not exist, so both paths do the same work.
_DUMMY_KEY_HASH = hash_secret("no such organization")


def new_org_id() -> str:
    """A random organisation id: 30 bytes of URL-safe base64 (40 chars, no padding).

    Never one that starts with "-": operators pass it as a CLI argument (`--org ID`), where
    argparse would take it for an option.
    """
    while True:
        org_id = base64.urlsafe_b64encode(secrets.token_bytes(30)).decode()
        if not org_id.startswith("-"):
            return org_id


def new_input_id() -> str:
    """``sen`` followed by 10 random lowercase letters and digits, as Datacooee's ids."""
    return "sen" + "".join(secrets.choice(_INPUT_ALPHABET) for _ in range(10))


def _validate_name(name: str, what: str) -> str:
    return validate_name(name, f"{what} name", MAX_NAME_LENGTH)


def _require_org(s: Session, org_id: str) -> Organization:
    org = s.get(Organization, org_id)
    if org is None:
        raise NotFound(f"organization {org_id!r} not found")
    return org


def create_org(s: Session, name: str) -> tuple[Organization, str]:
    """Create an organisation; returns it and its API key, which is shown only once."""
    name = _validate_name(name, "organization")
    api_key = new_secret()
    org = Organization(
        id=new_org_id(), name=name, api_key_hash=hash_secret(api_key), create_time=utc_now()
    )
    s.add(org)
    s.flush()
    return org, api_key


def authenticate_org(s: Session, org_id: str, api_key: str) -> Organization:
    """The organisation if the API key matches (constant time); else Unauthenticated."""
    org = s.get(Organization, org_id) if org_id else None
    expected = org.api_key_hash if org is not None else _DUMMY_KEY_HASH
    if not secrets_equal(expected, hash_secret(api_key or "")) or org is None:
        raise Unauthenticated("invalid organization id or api key")
    return org


def create_input(s: Session, org_id: str, name: str, measure_unit: str = "") -> Input:
    """Create an input (a numeric series) in the organisation; NotFound for an unknown org."""
    name = _validate_name(name, "input")
    measure_unit = (measure_unit or "").strip()
    if len(measure_unit) > MAX_UNIT_LENGTH:
        raise InvalidArgument(f"measure_unit must be at most {MAX_UNIT_LENGTH} characters")
    _require_org(s, org_id)
    item = Input(
        id=new_input_id(),
        org_id=org_id,
        name=name,
        measure_unit=measure_unit,
        create_time=utc_now(),
    )
    s.add(item)
    s.flush()
    return item


def list_inputs(
    s: Session, org_id: str, page_size: int | None = 0, page_token: str | None = ""
) -> tuple[Sequence[Input], str]:
    """A page of the organisation's inputs, newest first, and the next page token."""
    stmt = sa.select(Input).where(Input.org_id == org_id)
    return paginate(s, stmt, Input.create_time, Input.id, f"inputs:{org_id}", page_size, page_token)


def create_asset(s: Session, org_id: str, name: str, input_ids: Iterable[str]) -> Asset:
    """Create an asset grouping inputs of the same organisation.

    Repeated ids are stored once. Ids that do not exist or belong to another organisation
    raise NotFound naming them (the same answer for both, so other orgs' ids stay private).
    """
    name = _validate_name(name, "asset")
    _require_org(s, org_id)
    wanted = list(dict.fromkeys(input_ids))
    inputs = (
        s.scalars(sa.select(Input).where(Input.org_id == org_id, Input.id.in_(wanted))).all()
        if wanted
        else []
    )
    missing = [i for i in wanted if i not in {x.id for x in inputs}]
    if missing:
        raise NotFound(f"inputs not found: {', '.join(missing)}")
    asset = Asset(org_id=org_id, name=name, create_time=utc_now(), inputs=list(inputs))
    s.add(asset)
    s.flush()
    return asset


def get_asset(s: Session, org_id: str, asset_id: int) -> Asset:
    """The organisation's asset with its inputs; NotFound also for another org's asset."""
    asset = s.scalar(sa.select(Asset).where(Asset.id == asset_id, Asset.org_id == org_id))
    if asset is None:
        raise NotFound(f"asset {asset_id} not found")
    return asset
