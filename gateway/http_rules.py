"""The `google.api.http` rules of the descriptor image, as the gateway and the server need them.

The image Envoy loads is the one list of what REST exposes, so the routes that stream
(server-streaming rpcs) are read from it rather than written by hand; the server reads the
same rules from its descriptors to re-bind the fields a path binds (`PathTemplate`), so
that nothing but the path sets them (docs/architecture.md, "Query parameters and
path-bound fields").
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
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

    @property
    def path_regex(self) -> str:
        """An RE2 regex matching the paths of this rule, with or without a trailing slash
        and with any query (Envoy serves both slash forms, see docs/architecture.md)."""
        return f"^{_template_regex(self.template)}/?(\\?.*)?$"


@dataclass(frozen=True)
class PathTemplate:
    """One path template of an rpc, able to read its variables back out of a request path."""

    template: str

    @cached_property
    def _compiled(self) -> re.Pattern[str]:
        return re.compile(f"^{_template_regex(self.template, capture=True)}/?$")

    @property
    def fields(self) -> tuple[str, ...]:
        """The request fields the template binds, in path order (`user_id`, `device.id`)."""
        return tuple(match.group(1) for match in _VARIABLE.finditer(self.template))

    def bind(self, path: str) -> dict[str, str] | None:
        """The value of each path-bound field in `path` (its query ignored), percent-decoded
        as the transcoder decodes it, or None when `path` is not one of this template's."""
        match = self._compiled.match(path.split("?", 1)[0])
        if match is None:
            return None
        return {
            field: urllib.parse.unquote(value)
            for field, value in zip(self.fields, match.groups(), strict=True)
        }


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


def _template_regex(template: str, *, capture: bool = False) -> str:
    out, position = [], 0
    for match in _VARIABLE.finditer(template):
        out.append(_segments_regex(template[position : match.start()]))
        variable = _segments_regex(match.group(2) or "*")
        out.append(f"({variable})" if capture else variable)
        position = match.end()
    out.append(_segments_regex(template[position:]))
    return "".join(out)


def bindings(rule: http_pb2.HttpRule) -> Iterator[tuple[str, str, str]]:
    """(HTTP method, path template, body) of a rule and of its additional bindings."""
    for binding in (rule, *rule.additional_bindings):
        pattern = binding.WhichOneof("pattern")
        if pattern in _VERBS:
            yield pattern.upper(), getattr(binding, pattern), binding.body
        elif pattern == "custom":
            yield binding.custom.kind.upper(), binding.custom.path, binding.body


def http_rules(descriptor: Path, services: Iterable[str]) -> tuple[HttpRule, ...]:
    """Every HTTP rule of the rpcs of `services` in the descriptor set at `descriptor`."""
    wanted = set(services)
    image = descriptor_pb2.FileDescriptorSet.FromString(Path(descriptor).read_bytes())
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
                for verb, template, _body in bindings(rule):
                    rules.append(
                        HttpRule(
                            rpc=f"/{name}/{method.name}",
                            method=verb,
                            template=template,
                            server_streaming=method.server_streaming,
                            family=options.Extensions[options_pb2.api_family],
                        )
                    )
    return tuple(rules)


__all__ = ["HttpRule", "PathTemplate", "bindings", "http_rules"]
