"""What one request may hold: the checks the HTTP middleware makes before the application reads a
body (size, JSON nesting depth, Bundle entries), and its JSON error answer."""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson
from starlette.types import Send

from cds_service.settings import Settings

async def send_json_error(send: Send, status: int, code: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with `{"error": code, "detail": detail}` from middleware."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{},:')
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def structure(body: bytes) -> bytes:
    """The brackets, commas and colons of valid JSON bytes that are outside strings, in order.

    Escapes are dropped (`\\\\` first, then `\\"`), so the remaining quotes delimit strings. Of
    the rest only quotes, brackets, commas and colons are kept, and adjacent `""` pairs removed:
    a pair is either a whole string without those characters, or the end of one string and the
    start of the next with nothing between them, which merges the two strings' characters into
    one string. Either way every character left between a quote and the next one was inside a
    string, so cutting those few strings out leaves exactly the structure outside strings. All of
    it runs at C speed.
    """
    unescaped = body
    if b"\\" in body:  # one byte: found by memchr, where each two-byte search costs ~1 ns a byte
        unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = unescaped.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in skeleton:  # strings holding structure (a LOINC display: "Ferritin [Mass/volume]...")
        skeleton = b"".join(skeleton.split(b'"')[::2])
    return skeleton


def depth_of(skeleton: bytes) -> int:
    """The nesting depth: the highest running sum of +1 per opening and -1 per closing bracket."""
    return max(accumulate(array("b", skeleton.translate(_STEPS, b",:"))), default=0)


def values_at_most(skeleton: bytes) -> int:
    """An upper bound on the number of JSON values: each value but the root follows a `[`, a `,`
    or a `:` (a comma between object members precedes a key, and an empty array has none)."""
    return 1 + skeleton.count(b"[") + skeleton.count(b",") + skeleton.count(b":")


def bundle_entries(request: Any) -> int:
    """Entries of the Bundles the service reads: every prefetch value and context.draftOrders,
    nested Bundles included."""
    if not isinstance(request, dict):
        return 0
    roots: list[Any] = []
    prefetch = request.get("prefetch")
    if isinstance(prefetch, dict):
        roots.extend(prefetch.values())
    context = request.get("context")
    if isinstance(context, dict):
        roots.append(context.get("draftOrders"))
    count = 0
    while roots:
        node = roots.pop()
        if not (isinstance(node, dict) and node.get("resourceType") == "Bundle" and isinstance(node.get("entry"), list)):
            continue
        entries = node["entry"]
        count += len(entries)
        # Only nested Bundles go on: a chart's hundreds of other resources are counted, not visited.
        roots.extend(
            resource
            for entry in entries
            if isinstance(entry, dict) and isinstance(resource := entry.get("resource"), dict) and resource.get("resourceType") == "Bundle"
        )
    return count


@dataclass(frozen=True)
class BodyLimits:
    """What one request may hold (docs/security.md): each bounds the work a request can cause."""

    max_depth: int
    max_entries: int
    max_array_items: int
    max_string_chars: int
    max_resource_elements: int

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        return cls(
            max_depth=settings.max_json_depth,
            max_entries=settings.max_bundle_entries,
            max_array_items=settings.max_array_items,
            max_string_chars=settings.max_string_chars,
            max_resource_elements=settings.max_resource_elements,
        )


Problem = tuple[int, str, str]
"""Why a body is refused: status, error code, one-sentence detail."""
UNPARSED = object()
"""What `check_body` hands on for a body it could not parse (or did not need to)."""


def check_body(body: bytes, limits: BodyLimits) -> tuple[Problem | None, Any]:
    """Why a JSON body is refused (or None), and the body parsed (`UNPARSED` when it is not JSON).

    A body that is not JSON passes: the route answers it with its own 400. The parsed body is
    what the route then validates, so the body is parsed once (orjson); one orjson refuses is left
    to the route's own parser, which answers as it always does.
    """
    if not body.strip():
        return None, UNPARSED
    max_depth = limits.max_depth
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        message = str(exc).lower()
        if "recursion" in message or "depth" in message:
            return (400, "json-too-deep", f"JSON nested deeper than {max_depth} levels"), UNPARSED
        return None, UNPARSED
    # The body is walked for the per-resource limits only when its size and structure could break
    # them: no string is longer than the body, and no array has more items nor any resource more
    # elements than the body has values. A chart of a few hundred resources can break none but the
    # array limit, which a walk over the containers alone decides; that walk gives the depth too.
    skeleton = structure(body)
    values = values_at_most(skeleton)
    every_value = len(body) > limits.max_string_chars or values > limits.max_resource_elements
    arrays = not every_value and values > limits.max_array_items
    depth, array_problem = containers(value, limits.max_array_items) if arrays else (depth_of(skeleton), None)
    if depth > max_depth:
        return (400, "json-too-deep", f"JSON nested deeper than {max_depth} levels"), UNPARSED
    if bundle_entries(value) > limits.max_entries:
        return (413, "too-many-entries", f"more than {limits.max_entries} Bundle entries in one request"), UNPARSED
    problem = resource_problem(value, limits) if every_value else array_problem
    if problem is not None:
        return problem, UNPARSED
    return None, value


def containers(request: Any, max_items: int) -> tuple[int, Problem | None]:
    """The nesting depth (as `depth_of` counts it) and `resource_problem`'s array limit alone, in
    one walk over the arrays and objects, a level at a time (the scalars are only seen)."""
    level: list[Any] = [request] if type(request) is dict or type(request) is list else []
    entries: set[int] = set()
    """The ids of the Bundles' `entry` arrays seen: max_entries bounds those, not max_items."""
    depth = 0
    problem: Problem | None = None
    while level:
        depth += 1
        below: list[Any] = []
        keep = below.append
        for value in level:
            if type(value) is dict:
                if value.get("resourceType") == "Bundle" and type(value.get("entry")) is list:
                    entries.add(id(value["entry"]))
                members: Any = value.values()
            else:
                if problem is None and len(value) > max_items and id(value) not in entries:
                    problem = 413, "array-too-long", f"an array of more than {max_items} items (CDS_MAX_ARRAY_ITEMS)"
                members = value
            for member in members:
                kind = type(member)
                if kind is dict or kind is list:
                    keep(member)
        level = below
    return depth, problem


def resource_problem(request: Any, limits: BodyLimits) -> Problem | None:
    """The first per-resource limit the request breaks: an array longer than `max_array_items`
    (a Bundle's `entry` excepted: `max_entries` bounds it), a string longer than
    `max_string_chars`, or a resource (each Bundle entry, each single resource) with more than
    `max_resource_elements` JSON values. One walk over the parsed body, children before siblings."""
    max_items, max_chars, max_elements = limits.max_array_items, limits.max_string_chars, limits.max_resource_elements
    counts: list[int] = [0]  # index 0: whatever is outside any resource
    stack: list[tuple[Any, int]] = [(request, 0)]
    while stack:
        value, owner = stack.pop()
        kind = type(value)
        if kind is dict:
            if isinstance(value.get("resourceType"), str):
                counts.append(0)
                owner = len(counts) - 1
            entries = value.get("entry") if value.get("resourceType") == "Bundle" else None
            if not isinstance(entries, list):
                entries = None
            for member in value.values():
                if entries is not None and member is entries:
                    stack.extend((entry, 0) for entry in member)  # counted by max_entries, each entry a resource of its own
                else:
                    stack.append((member, owner))
        elif kind is list:
            if len(value) > max_items:
                return 413, "array-too-long", f"an array of more than {max_items} items (CDS_MAX_ARRAY_ITEMS)"
            stack.extend((item, owner) for item in value)
        elif kind is str and len(value) > max_chars:
            return 413, "string-too-long", f"a string of more than {max_chars} characters (CDS_MAX_STRING_CHARS)"
        counts[owner] += 1
        if owner and counts[owner] > max_elements:
            return 413, "resource-too-large", f"a resource with more than {max_elements} elements (CDS_MAX_RESOURCE_ELEMENTS)"
    return None
