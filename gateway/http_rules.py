"""The `google.api.http` rules of the descriptor image, as the gateway config needs them.

The image Envoy loads is the one list of what REST exposes, so the routes that stream
(server-streaming rpcs) and the fields a path binds (which no query parameter may change)
are read from it rather than written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from thingwire.options.v1 import options_pb2

_VERBS = ("get", "put", "post", "delete", "patch")
#: A `{field}` or `{field=pattern}` segment of a path template.
_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


@dataclass(frozen=True)
class HttpRule:
    """One REST binding of one rpc."""

    rpc: str
    method: str
    template: str
    server_streaming: bool
    family: int
    #: Top-level request fields a query parameter may set (none when the body is "*").
    query_fields: tuple[str, ...] = ()

    @property
    def path_fields(self) -> tuple[str, ...]:
        """The request fields this rule binds from the path (`user_id`, `device.id`)."""
        return tuple(match.group(1) for match in _VARIABLE.finditer(self.template))

    @property
    def path_regex(self) -> str:
        """An RE2 regex matching the paths of this rule, with or without a trailing slash
        and with any query (Envoy serves both slash forms, see docs/architecture.md)."""
        return f"^{_template_regex(self.template)}/?(\\?.*)?$"


def _segments_regex(pattern: str) -> str:
    parts = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(".*")
        elif segment == "*":
            parts.append("[^/?]+")
        else:
            parts.append(re.escape(segment))
    return "/".join(parts)


def _template_regex(template: str) -> str:
    out, position = [], 0
    for match in _VARIABLE.finditer(template):
        out.append(_segments_regex(template[position : match.start()]))
        out.append(_segments_regex(match.group(2) or "*"))
        position = match.end()
    out.append(_segments_regex(template[position:]))
    return "".join(out)


def _bindings(rule: http_pb2.HttpRule) -> Iterable[tuple[str, str, str]]:
    for binding in (rule, *rule.additional_bindings):
        pattern = binding.WhichOneof("pattern")
        if pattern in _VERBS:
            yield pattern.upper(), getattr(binding, pattern), binding.body
        elif pattern == "custom":
            yield binding.custom.kind.upper(), binding.custom.path, binding.body


def _query_fields(
    message: descriptor_pb2.DescriptorProto | None, template: str, body: str
) -> tuple[str, ...]:
    if message is None or body == "*":
        return ()
    bound = {match.group(1).split(".")[0] for match in _VARIABLE.finditer(template)}
    return tuple(f.name for f in message.field if f.name not in bound and f.name != body)


def http_rules(descriptor: Path, services: Iterable[str]) -> tuple[HttpRule, ...]:
    """Every HTTP rule of the rpcs of `services` in the descriptor set at `descriptor`."""
    wanted = set(services)
    image = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor).read_bytes())
    messages = {
        f".{proto_file.package}.{message.name}": message
        for proto_file in image.file
        for message in proto_file.message_type
    }
    rules = []
    for proto_file in image.file:
        for service in proto_file.service:
            name = f"{proto_file.package}.{service.name}"
            if name not in wanted:
                continue
            for method in service.method:
                options = method.options
                if not options.HasExtension(annotations_pb2.http):
                    continue
                rule = options.Extensions[annotations_pb2.http]
                for verb, template, body in _bindings(rule):
                    rules.append(
                        HttpRule(
                            rpc=f"/{name}/{method.name}",
                            method=verb,
                            template=template,
                            server_streaming=method.server_streaming,
                            family=options.Extensions[options_pb2.api_family],
                            query_fields=_query_fields(
                                messages.get(method.input_type), template, body
                            ),
                        )
                    )
    return tuple(rules)


def path_bound_fields(rules: Iterable[HttpRule]) -> tuple[str, ...]:
    """Every field name some rule binds from its path, sorted: the query parameters the
    transcoder must ignore, so that a query never changes a path-bound field.

    Envoy's list applies to every rpc, so a name bound by one rule's path and settable by
    another rule's query would silently stop working there: that is refused.
    """
    rules = tuple(rules)
    bound = {field for rule in rules for field in rule.path_fields}
    for rule in rules:
        clash = bound.intersection(rule.query_fields)
        if clash:
            raise ValueError(
                f"{rule.method} {rule.template} takes {sorted(clash)} from the query, "
                "which another rule binds from its path"
            )
    return tuple(sorted(bound))


__all__ = ["HttpRule", "http_rules", "path_bound_fields"]
