"""What to sample: requests from command-line conditions or a prompt file (CSV or JSONL), validated in full before
any generation starts.

A request is one target: its conditions (any of ``plaid.prompts.CONDITION_KEYS``), how many samples, and the task:
``generate`` (unconditional when there are no conditions), ``infill`` (a text with ``[MASK]``) or ``zscan`` (the
CrystaLLM web app's search: cell composition = formula x Z for Z = 1, 2, 3, 4, 6, 8 until a valid structure).

Prompt-file columns: ``id`` (optional, default ``row<N>``), ``num_samples`` (optional), condition columns,
``masked_text`` (infill), ``z_scan`` (optional bool), ``material_id`` (optional: the target structure a CSP request
is for; every record produced from the request carries it, and ``plaid evaluate-csp`` assigns by it). Empty cells mean "not given". Unknown columns, bad values,
unknown elements or space groups are reported together, with row numbers, as one ``RequestError``.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..prompts import CONDITION_KEYS, generation_prompt, infill_prompt, normalize_conditions
from ..representations.base import MASK

Z_SCAN = (1, 2, 3, 4, 6, 8)
FILE_COLUMNS = ("id", "num_samples", "masked_text", "z_scan", "material_id", *CONDITION_KEYS)
_ID = re.compile(r"^[A-Za-z0-9_.\-+=]+$")


class RequestError(ValueError):
    """A sampling request that cannot be served; raised before any generation."""


@dataclass
class SampleRequest:
    request_id: str
    conditions: dict[str, str] = field(default_factory=dict)  # normalized
    num_samples: int = 1
    task: str = "generate"  # generate | infill | zscan
    masked_text: str | None = None
    material_id: str | None = None  # target id (CSP); copied into every record of this request

    @property
    def kind(self) -> str:
        if self.task != "generate":
            return self.task
        return "conditional" if self.conditions else "unconditional"


def prompt_for(
    request: SampleRequest, representation: str, conditions: dict | None = None, style: str | None = None
) -> str:
    """The prompt text (from plaid.prompts, the dataset builder's templates) in prompt style ``style``."""
    if request.task == "infill":
        return infill_prompt(request.masked_text, style)
    return generation_prompt(representation, request.conditions if conditions is None else conditions, style)


def zscan_conditions(request: SampleRequest, z: int, style: str | None = None) -> dict[str, str]:
    """Conditions for one Z of a scan: the formula and the cell composition formula x Z."""
    from pymatgen.core import Composition

    formula = Composition(request.conditions["formula"])
    conditions = dict(request.conditions)
    conditions["composition"] = (formula * z).formula
    conditions.pop("z", None)
    return normalize_conditions(conditions, style)


def make_request(
    request_id: str,
    conditions: dict | None = None,
    num_samples: int = 1,
    masked_text: str | None = None,
    z_scan: bool = False,
    style: str | None = None,
) -> SampleRequest:
    """Validate and build one request for prompt style ``style`` (raises RequestError with the reason)."""
    if not _ID.match(str(request_id)):
        raise RequestError(f"request id {request_id!r}: use letters, digits and _.-+= only")
    try:
        num = int(num_samples)
    except (TypeError, ValueError):
        raise RequestError(f"num_samples {num_samples!r} is not an integer") from None
    if num < 1:
        raise RequestError(f"num_samples must be >= 1, got {num}")
    try:
        conds = normalize_conditions(conditions or {}, style)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    if masked_text is not None:
        if conds or z_scan:
            raise RequestError("an infill request takes no conditions and no Z scan")
        if MASK not in masked_text:
            raise RequestError(f"masked_text holds no {MASK}")
        return SampleRequest(str(request_id), {}, num, "infill", masked_text)
    if z_scan:
        if "formula" not in conds:
            raise RequestError("a Z scan needs a formula")
        if "composition" in conds or "z" in conds:
            raise RequestError("a Z scan chooses the cell composition and Z itself; drop composition/z")
        return SampleRequest(str(request_id), conds, num, "zscan")
    return SampleRequest(str(request_id), conds, num, "generate")


def _blank(value) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _truthy(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def read_prompt_file(
    path: str | Path, default_num_samples: int = 1, style: str | None = None
) -> list[SampleRequest]:
    """Requests from a CSV or JSONL prompt file (conditions checked against prompt style ``style``); every row is
    checked and all problems are raised together."""
    path = Path(path)
    if not path.is_file():
        raise RequestError(f"prompt file {path} does not exist")
    rows: list[dict] = []
    errors: list[str] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"line {i}: not JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                errors.append(f"line {i}: expected a JSON object")
                continue
            rows.append((i, row))
    elif path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if reader.fieldnames is None:
                raise RequestError(f"{path}: empty prompt file")
            for i, row in enumerate(reader, start=2):
                if None in row:
                    errors.append(f"line {i}: more cells than header columns")
                    continue
                rows.append((i, row))
    else:
        raise RequestError(f"{path}: prompt files are .csv, .tsv or .jsonl")
    requests: list[SampleRequest] = []
    seen: set[str] = set()
    for n, (i, row) in enumerate(rows, start=1):
        unknown = sorted(set(row) - set(FILE_COLUMNS))
        if unknown:
            errors.append(f"line {i}: unknown column(s) {unknown}; known: {', '.join(FILE_COLUMNS)}")
            continue
        values = {k: v for k, v in row.items() if not _blank(v)}
        request_id = str(values.get("id", f"row{n}"))
        if request_id in seen:
            errors.append(f"line {i}: duplicate id {request_id!r}")
            continue
        try:
            req = make_request(
                request_id,
                {k: values[k] for k in CONDITION_KEYS if k in values},
                values.get("num_samples", default_num_samples),
                values.get("masked_text"),
                _truthy(values.get("z_scan", False)),
                style,
            )
        except RequestError as exc:
            errors.append(f"line {i}: {exc}")
            continue
        seen.add(request_id)
        if "material_id" in values:
            req.material_id = str(values["material_id"]).strip()
        requests.append(req)
    if errors:
        raise RequestError(f"{path}: {len(errors)} bad row(s):\n  " + "\n  ".join(errors))
    if not requests:
        raise RequestError(f"{path}: no requests")
    return requests
