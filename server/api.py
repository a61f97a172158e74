"""Route registry: one decorator declares a route, its auth, its body model and its docs.

Because the same declaration drives routing, authorisation and the OpenAPI document, the
document cannot drift from what the server does (a test checks every route is in it).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from commerce.accounts import Principal, Role
from commerce.base import MAX_ID, as_utc
from commerce.errors import DomainError, Forbidden, InvalidInput, Unauthorized
from commerce.text import has_unstorable_text
from server.auth import bearer_token
from server.keys import principal_key, tokens_key

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)

PUBLIC = "public"  # anyone, no token
USER = "user"  # any signed-in role

# A row id in a request body: bounded so it fits the INTEGER columns it is looked up in.
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class BadJson(DomainError):
    code = "bad_json"
    status = 400
    default_message = "请求体不是有效的 JSON / Body is not valid JSON"


class ValidationFailed(DomainError):
    code = "validation_failed"
    status = 400
    default_message = "输入校验失败 / Some fields are invalid"


class UnsupportedMediaType(DomainError):
    code = "unsupported_media_type"
    status = 415
    default_message = "不支持的内容类型 / Unsupported content type"


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: str | tuple[Role, ...]
    body: type[BaseModel] | None = None
    request_content_type: str = "application/json"
    response_content_type: str = "application/json"
    responses: dict[int, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


class Api:
    """Collects operations; `install(app)` adds them to the router with auth wrappers."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        auth: str | Sequence[Role] = USER,
        body: type[BaseModel] | None = None,
        request_content_type: str = "application/json",
        response_content_type: str = "application/json",
        responses: dict[int, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method=method.upper(), path=path, handler=handler, summary=summary, tag=tag,
                    auth=auth if isinstance(auth, str) else tuple(auth), body=body,
                    request_content_type=request_content_type,
                    response_content_type=response_content_type,
                    responses=dict(responses or {}), query=dict(query or {}),
                )
            )
            return handler

        return decorate

    def install(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, _guarded(op), name=_route_name(op))

    def openapi(self, title: str = "Linli API", version: str = "1") -> dict[str, Any]:
        return build_openapi(self.operations, title, version)


def _route_name(op: Operation) -> str:
    return op.method.lower() + re.sub(r"[^a-z0-9]+", "_", op.path.lower()).rstrip("_")


def _guarded(op: Operation) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        if op.auth != PUBLIC:
            principal = _verify_bearer(request)
            if isinstance(op.auth, tuple) and principal.role not in op.auth:
                raise Forbidden(
                    "你的角色不能执行此操作 / Your role cannot do this",
                    required=[role.value for role in op.auth],
                )
        elif (token := bearer_token(request.headers.get("Authorization"))) is not None:
            # Public routes still know who is asking when a valid token comes along.
            with contextlib.suppress(Unauthorized):
                request[principal_key] = request.app[tokens_key].verify(token)
        return await op.handler(request)

    handler.__name__ = op.handler.__name__
    return handler


def authenticate(request: web.Request) -> Principal:
    """The principal of the request's bearer token; 401 when absent, expired or forged."""
    if principal_key in request:
        return request[principal_key]
    return _verify_bearer(request)


def _verify_bearer(request: web.Request) -> Principal:
    """What `authenticate` does for a request nobody authenticated yet (a guarded route's first
    step): the `in` test on an aiohttp request raises and catches a KeyError when the key is
    absent, and on the flash-sale path that exception's allocations set off the collector."""
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        raise Unauthorized(reason="token_missing")
    principal = request.app[tokens_key].verify(token)
    request[principal_key] = principal
    return principal


def principal(request: web.Request) -> Principal:
    """The principal a guarded route already authenticated."""
    return request[principal_key]


def optional_principal(request: web.Request) -> Principal | None:
    return request.get(principal_key)


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse and validate the body, strictly; errors name each bad field.

    Strict: a JSON type must be the field's own (`"3"`, `2.0` and `true` are not integers, a
    number is not a time): a client bug should fail loudly, not buy 3 jars. pydantic's JSON mode
    still reads times (ISO 8601) and enum values from strings.
    """
    if request.content_type not in ("application/json", "") and request.can_read_body:
        raise UnsupportedMediaType(expected="application/json")
    raw = await request.read() or b"{}"
    # NUL and lone surrogates can only arrive escaped (a raw control byte is not valid JSON and
    # UTF-8 cannot carry a surrogate), so only a body with "\u" in it needs the walk.
    if b"\\u" in raw:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            raise BadJson() from None
        if has_unstorable_text(data):
            raise ValidationFailed(fields=[{
                "field": "body", "type": "string_unstorable",
                "message": "text may not contain NUL (\\u0000) or unpaired surrogates"}])
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            raise BadJson() from None  # includes a body of hundreds of nested brackets
        raise ValidationFailed(fields=field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    return [
        {"field": ".".join(str(part) for part in error["loc"]) or "body", "message": error["msg"],
         "type": error["type"]}
        for error in exc.errors(include_url=False)
    ]


def parse_id(raw: str) -> int | None:
    """An id written in ASCII digits within the INTEGER range, else None.

    `str.isdigit` alone accepts "²" (which int() refuses) and other Unicode digits.
    """
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > MAX_ID:
        return None
    return int(raw)


def path_int(request: web.Request, name: str) -> int:
    """An integer path parameter; 400 when it is not one (no such resource can exist)."""
    value = parse_id(request.match_info[name])
    if value is None:
        raise InvalidInput(f"{name} 必须是数字 / {name} must be a number", field=name)
    return value


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    # A time goes out as ISO 8601 with its offset; SQLite's naive ones are the UTC they were
    # stored as (str() would give "2026-12-03 12:00:00", which browsers read as local time).
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    return str(value)


# --- OpenAPI ---------------------------------------------------------------------------------

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def build_openapi(operations: list[Operation], title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for op in operations:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)(?::[^}]*)?}", op.path)
        ]
        params += [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"},
             "description": desc}
            for name, desc in op.query.items()
        ]
        responses: dict[str, Any] = {
            "200": {"description": "OK", "content": {op.response_content_type: {"schema": {}}}}
        }
        for status, desc in op.responses.items():
            # A documented error status is still rendered by the one error middleware.
            media: dict[str, Any] = (
                {"schema": {"$ref": "#/components/schemas/Error"}} if status >= 400 else {}
            )
            responses[str(status)] = (
                {"description": desc} if status == 204  # no body, so no media type
                else {"description": desc, "content": {"application/json": media}})
        responses["default"] = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": _route_name(op),
            "parameters": params,
            "responses": responses,
        }
        if op.auth != PUBLIC:
            entry["security"] = [{"bearer": []}]
            if isinstance(op.auth, tuple):
                entry["x-roles"] = [role.value for role in op.auth]
        if op.body is not None:
            schema = op.body.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            schemas[op.body.__name__] = schema
            entry["requestBody"] = {
                "required": True,
                "content": {
                    op.request_content_type: {
                        "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}
                    }
                },
            }
        elif op.request_content_type != "application/json":
            entry["requestBody"] = {
                "required": True,
                "content": {op.request_content_type: {"schema": {"type": "string"}}},
            }
        path = re.sub(r"{(\w+):[^}]*}", r"{\1}", op.path)
        paths.setdefault(path, {})[op.method.lower()] = entry
    return {
        # 3.1: its schemas are JSON Schema 2020-12, which is what pydantic's model_json_schema
        # emits (numeric exclusiveMinimum, {"type": "null"} in anyOf); 3.0 rejects those.
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
