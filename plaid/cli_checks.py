"""Checks every command runs on its arguments before it loads a model or writes anything.

Each check raises :class:`plaid.errors.InputError` or :class:`plaid.errors.UsageError` with one sentence that
names the option and the path, says what is wrong and what to give instead. The checks are cheap (headers, first
bytes, one parse of a CSV) and never create the outputs they check; the one thing written is the settings record
of a resume guard (:func:`same_settings`), called after every other check of a command has passed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError, UsageError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")
ADAPTER_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _label(option: str | None, what: str) -> str:
    return f"{option} ({what})" if option else what


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "") not in (
        "", "0")


# --------------------------------------------------------------------------------------------------- inputs


def require_file(path, what: str, option: str | None = None, hint: str = "", nonempty: bool = True) -> Path:
    """``path`` is an existing, readable regular file (with ``nonempty``: of at least one byte)."""
    p = Path(path).expanduser()
    label = _label(option, what)
    tail = f"; {hint}" if hint else ""
    if not p.exists():
        raise InputError(f"{label}: {p} does not exist{tail}")
    if p.is_dir():
        raise InputError(f"{label}: {p} is a directory, not a file{tail}")
    try:
        with open(p, "rb") as fh:
            first = fh.read(1)
    except OSError as exc:
        raise InputError(f"{label}: cannot read {p}: {exc.strerror or exc}") from None
    if nonempty and not first:
        raise InputError(f"{label}: {p} is empty{tail}")
    return p


def require_dir(path, what: str, option: str | None = None, hint: str = "") -> Path:
    p = Path(path).expanduser()
    label = _label(option, what)
    tail = f"; {hint}" if hint else ""
    if not p.exists():
        raise InputError(f"{label}: {p} does not exist{tail}")
    if not p.is_dir():
        raise InputError(f"{label}: {p} is a file, not a directory{tail}")
    if not os.access(p, os.R_OK | os.X_OK):
        raise InputError(f"{label}: cannot read directory {p}: permission denied")
    return p


def looks_like_cif(path) -> bool:
    """A CIF file: its first line that is not blank or a comment opens a ``data_`` block. (A CDVAE CSV holds CIFs
    in its cells, but its first line is the header.)"""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                stripped = line.strip()
                if stripped and not stripped.startswith("#"):
                    return stripped.startswith("data_")
    except OSError:
        return False
    return False


def read_csv_checked(path, what: str, option: str | None = None, columns: Iterable[str] = ("cif",),
                     hint: str = "give a CDVAE-format CSV (material_id, cif, ...)"):
    """Parse the CSV at ``path`` once and return it (a DataFrame); wrong formats, missing columns, corrupt rows
    and zero rows are :class:`InputError`."""
    import pandas as pd

    p = require_file(path, what, option, hint)
    label = _label(option, what)
    if looks_like_cif(p):
        raise InputError(f"{label}: {p} is a CIF file, not a CSV; {hint}")
    try:
        df = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise InputError(f"{label}: {p} holds no CSV header; {hint}") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"{label}: {p} is not a well-formed CSV ({_first_line(exc)}); fix or remove that row") from None
    except UnicodeDecodeError:
        raise InputError(f"{label}: {p} is not a text CSV (not UTF-8); {hint}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        shown = ", ".join(map(str, df.columns[:8])) + (", ..." if len(df.columns) > 8 else "")
        raise InputError(f"{label}: {p} has no {', '.join(repr(c) for c in missing)} column (columns: {shown}); {hint}")
    if len(df) == 0:
        raise InputError(f"{label}: {p} has a header but no rows; nothing to do")
    return df


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_jsonl_checked(path, what: str, option: str | None = None, allow_corrupt: bool = False,
                       hint: str = "give the JSONL written by plaid sample") -> list[dict]:
    """The records of a JSONL file. Empty files, CIF files and (unless ``allow_corrupt``) a corrupt line that is
    not the torn last line of a killed run are :class:`InputError`."""
    p = require_file(path, what, option, hint)
    label = _label(option, what)
    if looks_like_cif(p):
        raise InputError(f"{label}: {p} is a CIF file, not JSONL; {hint}")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{label}: {p} is not a UTF-8 text file; {hint}") from None
    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise InputError(f"{label}: {p} holds no records (only blank lines); {hint}")
    records, bad = [], []
    for k, (i, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if k == len(numbered) - 1 and records:
                break  # the torn last line of a killed writer: readers ignore it
            bad.append(i)
            continue
        if not isinstance(record, dict):
            bad.append(i)
            continue
        records.append(record)
    if bad and (not allow_corrupt or not records):
        where = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        raise InputError(f"{label}: {p} line {where} is not a JSON object (corrupt line); fix or delete it")
    return records


def require_structure_source(path, what: str, option: str | None = None) -> None:
    """A CSV with a ``cif`` column, a JSONL with ``cif``, or a directory of ``.cif`` files."""
    p = Path(path).expanduser()
    if p.is_dir():
        require_dir(p, what, option)
        if not any(q.suffix.lower() == ".cif" for q in p.iterdir()):
            raise InputError(f"{_label(option, what)}: directory {p} holds no .cif files")
        return
    if p.suffix.lower() in (".jsonl", ".json"):
        records = read_jsonl_checked(p, what, option, hint="give a JSONL whose records have a 'cif' field")
        if not any("cif" in r for r in records):
            raise InputError(f"{_label(option, what)}: no record of {p} has a 'cif' field")
        return
    read_csv_checked(p, what, option, hint="give a CSV with a 'cif' column, a JSONL with 'cif', or a directory "
                                           "of .cif files")


def require_samples(path, what: str = "samples", option: str | None = None) -> int:
    """The samples of ``plaid evaluate``/``evaluate-csp``: a CSV with a ``cif`` column, plaid sample JSONL (a
    corrupt line there becomes a sample with its reason), or a directory / tar archive of CIF files (one sample per
    file). Returns the number of samples."""
    p = Path(path).expanduser()
    hint = "give plaid sample JSONL, a CSV with a 'cif' column, or a directory / .tar.gz of CIF files"
    from .evaluation.samples import is_cif_collection, read_cif_files

    if p.exists() and is_cif_collection(p):
        import tarfile

        try:
            n = len(read_cif_files(p))
        except (OSError, EOFError, tarfile.TarError) as exc:
            raise InputError(f"{_label(option, what)}: {p} cannot be read as a CIF archive ({exc}); {hint}") from None
        if n == 0:
            raise InputError(f"{_label(option, what)}: {p} holds no .cif files; {hint}")
        return n
    if p.suffix.lower() == ".csv":
        return len(read_csv_checked(p, what, option, hint=hint))
    read_jsonl_checked(p, what, option, allow_corrupt=True, hint=hint)
    return sum(1 for line in p.read_text(encoding="utf-8").splitlines() if line.strip())


def require_json_file(path, what: str, option: str | None = None, hint: str = "") -> dict:
    p = require_file(path, what, option, hint)
    try:
        value = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{_label(option, what)}: {p} is not valid JSON ({exc}); "
                         f"{hint or 'restore or regenerate it'}") from None
    if not isinstance(value, dict):
        raise InputError(f"{_label(option, what)}: {p} does not hold a JSON object")
    return value


HULL_SUFFIXES = (".pkl", ".pkl.gz", ".pickle", ".pickle.gz", ".json", ".json.gz")


def require_hull(path=None, reference_csv=None, option: str = "--hull", reference_option: str = "--reference") -> None:
    """A hull file of a known type, or (offline hull from ``reference_csv``) the MP elemental references it needs."""
    if path is not None:
        p = require_file(path, "MP hull", option, "give 2023-02-07-ppd-mp.pkl.gz or MP entries .json.gz")
        if not p.name.lower().endswith(HULL_SUFFIXES):
            raise InputError(f"{option}: {p} is not a hull file (expected a .pkl.gz PatchedPhaseDiagram or MP entries "
                             ".json.gz)")
    elif reference_csv is not None:
        from .hull import MP_ELEMENTAL_REFS_NAME, _default_elemental_refs

        if _default_elemental_refs() is None:
            raise InputError(f"{reference_option}: an offline hull needs the MP elemental reference entries "
                             f"({MP_ELEMENTAL_REFS_NAME}) in $PLAID_DATA_DIR/mp/ or the plaid cache; none found")


def require_structures(path, option: str, split: str) -> None:
    """A CDVAE CSV, or a built dataset directory holding ``split``."""
    from pathlib import Path

    from .errors import InputError

    p = Path(path).expanduser()
    if p.is_dir():
        dataset = p / "dataset" if (p / "dataset").is_dir() else p
        if not (dataset / "dataset_dict.json").is_file():
            raise InputError(
                f"{option}: {p} is not a dataset built by plaid (no dataset_dict.json); give a CDVAE CSV "
                "or the output directory of plaid data build / the SFT recipe"
            )
        if not (dataset / split).is_dir():
            raise InputError(f"{option}: {p} has no {split!r} split")
        return
    read_csv_checked(
        p, "structures", option, hint="give a CDVAE-format CSV (material_id, cif) or a built dataset"
    )


# --------------------------------------------------------------------------------------------------- models


def _require_base(base: str, where: str, option: str, hint: str) -> None:
    """A base model: an existing directory, a Hub id in the Hugging Face cache, or (online) any Hub id."""
    from .training.model import cached_snapshot

    if Path(base).expanduser().exists():
        return
    if not _HUB_ID.match(str(base)):
        raise InputError(f"{option}: the base model {base} {where} is not found; {hint}")
    if _offline() and cached_snapshot(str(base)) is None:
        raise InputError(f"{option}: the base model {base} {where} is not in the Hugging Face cache and "
                         "HF_HUB_OFFLINE is set; download it (hf download " + str(base) + ") or give its "
                         "directory with --base-model")


def require_model_dir(path, option: str = "--model", adapter_only: bool = False, allow_hub: bool = True,
                      base_model: str | None = None) -> str:
    """A trained model directory: a LoRA adapter (``adapter_config.json`` + adapter weights, base model found) or
    a full model (``config.json`` + weights). A Hub id (owner/name) passes when the Hub is reachable. An adapter's
    base is found when it is a directory, a Hub id in the Hugging Face cache (offline too), any Hub id online, or
    ``<adapter>/base_model``; ``base_model`` (``--base-model``) replaces the recorded base."""
    p = Path(path).expanduser()
    what = "LoRA adapter" if adapter_only else "model directory"
    if not p.exists():
        if allow_hub and _HUB_ID.match(str(path)) and not _offline() and not adapter_only:
            return str(path)  # a Hub model id
        offline = " (Hub ids are not fetched: HF_HUB_OFFLINE is set)" if _HUB_ID.match(str(path)) else ""
        raise InputError(f"{option}: no {what} at {path}{offline}; give the output_dir of a training run")
    if not p.is_dir():
        raise InputError(f"{option}: {p} is a file, not a {what}")
    adapter, config = p / "adapter_config.json", p / "config.json"
    if adapter_only and not adapter.is_file():
        raise InputError(f"{option}: {p} is not a LoRA adapter (no adapter_config.json)")
    if not adapter.is_file() and not config.is_file():
        raise InputError(f"{option}: {p} is not a model directory (no config.json or adapter_config.json); give the "
                         "output_dir of a training run")
    if base_model is not None and not adapter.is_file():
        raise InputError(f"--base-model: {p} is not a LoRA adapter (no adapter_config.json); --base-model applies "
                         "to adapters only")
    if adapter.is_file():
        cfg = require_json_file(adapter, "adapter config", option)
        if not any((p / f).is_file() for f in ADAPTER_WEIGHT_FILES):
            raise InputError(f"{option}: {p} holds adapter_config.json but no adapter weights "
                             "(adapter_model.safetensors); the training run may not have finished")
        if base_model is not None:
            _require_base(str(base_model), "given with --base-model", "--base-model",
                          "give the base model's directory or Hub id")
            return str(p)
        base = cfg.get("base_model_name_or_path")
        if not base:
            raise InputError(f"{option}: {adapter} names no base_model_name_or_path; give the base with --base-model")
        if not (p / "base_model").is_dir():
            _require_base(str(base), f"named in {adapter}", option,
                          f"restore it (or put it in {p / 'base_model'}), set base_model_name_or_path or give "
                          "--base-model")
    else:
        require_json_file(config, "model config", option)
        if not any((p / f).is_file() for f in WEIGHT_FILES):
            raise InputError(f"{option}: {p} holds config.json but no weights (model.safetensors); the training "
                             "run may not have finished")
    return str(p)


# --------------------------------------------------------------------------------------------------- outputs


def _nearest_existing(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _require_creatable(p: Path, option: str) -> None:
    anc = _nearest_existing(p)
    if not anc.is_dir():
        raise InputError(f"{option}: cannot create {p}: {anc} is a file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot write {p}: {anc} is not writable")


def require_writable_dir(path, option: str = "--out") -> Path:
    """An output directory that exists and is writable, or can be created. Nothing is created here."""
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise InputError(f"{option}: {p} exists and is a file, not a directory; give a directory")
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(f"{option}: directory {p} is not writable")
        return p
    _require_creatable(p, option)
    return p


def require_writable_file(path, option: str = "--out") -> Path:
    """An output file that can be appended to or created (its directory created if needed)."""
    p = Path(path).expanduser()
    if p.exists():
        if p.is_dir():
            raise InputError(f"{option}: {p} is a directory; give a file path")
        if not os.access(p, os.W_OK):
            raise InputError(f"{option}: {p} is not writable")
        return p
    _require_creatable(p, option)
    return p


# --------------------------------------------------------------------------------------------------- options


def require_positive(value, option: str, minimum: float = 1) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{option} must be >= {minimum:g}, got {value}")


def require_fraction(value, option: str, allow_zero: bool = True) -> None:
    if value is not None and not ((0 <= value if allow_zero else 0 < value) and value < 1):
        raise UsageError(f"{option} must be in [0, 1), got {value}")


@contextmanager
def as_usage_error(option: str):
    """Turn the ``ValueError`` of a library parser (``--task-mix``, ``--splits``...) into a UsageError."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{option}: {exc}") from None


def compare_settings(before: dict, wanted: dict, what: str, hint: str) -> None:
    """UsageError listing the settings that differ between ``before`` and ``wanted`` (JSON-like dicts)."""
    wanted = json.loads(json.dumps(wanted, default=str))
    if before != wanted:
        keys = sorted(k for k in set(before) | set(wanted) if before.get(k) != wanted.get(k))
        diff = ", ".join(f"{k}: {before.get(k)!r} then, {wanted.get(k)!r} now" for k in keys[:4])
        raise UsageError(f"{what} was started with other settings ({diff}); {hint}")


def same_settings(path, settings: dict, what: str, hint: str) -> None:
    """Resume guard: ``path`` records the settings an output was made with; other settings are a UsageError that
    lists what differs. The settings are recorded when ``path`` does not exist yet (or is unreadable)."""
    p = Path(path)
    wanted = json.loads(json.dumps(settings, default=str))
    if p.exists():
        try:
            before = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            before = None
        if isinstance(before, dict):
            compare_settings(before, wanted, what, hint)
            return
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(wanted, indent=2, sort_keys=True))
    os.replace(tmp, p)


def read_results(path, option: str) -> list[dict]:
    """The records of a resumable JSONL output (a torn last line is ignored, a corrupt one elsewhere is not)."""
    from .io import read_jsonl

    try:
        return read_jsonl(path)
    except ValueError as exc:
        raise InputError(f"{option}: {exc}; delete that line or the file to start clean") from None


# ---------------------------------------------------------------------------------- commands outside */cli.py
# plaid relax lives in plaid/relax.py; its checks are run by plaid.cli.main through these hooks.

RELAX_SETTINGS = ("name", "fmax", "max_steps", "filter")


def check_relax(args) -> None:
    require_structure_source(args.input, "input structures")
    out = require_writable_file(args.out, "--out")
    if args.model_path is not None and not Path(args.model_path).expanduser().exists():
        raise InputError(f"--model-path: {args.model_path} does not exist; give the MLIP weights")
    if args.reference_csv is not None:
        read_csv_checked(args.reference_csv, "offline hull reference", "--reference-csv")
    require_hull(args.hull, args.reference_csv, reference_option="--reference-csv")
    require_positive(args.max_steps, "--max-steps")
    require_positive(args.batch_size, "--batch-size")
    if args.fmax <= 0:
        raise UsageError(f"--fmax must be > 0, got {args.fmax}")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, got {args.timeout}")
    wanted = {"name": args.relaxer, "fmax": args.fmax, "max_steps": args.max_steps, "filter": args.filter}
    for record in read_results(out, "--out") if out.exists() else []:
        settings = record.get("settings") or {}
        differ = [k for k in RELAX_SETTINGS if k in settings and settings[k] != wanted[k]]
        if differ:
            diff = ", ".join(f"{k} {settings[k]!r} then, {wanted[k]!r} now" for k in differ)
            raise UsageError(f"--out: {out} holds relaxations made with other settings ({diff}); re-run with the "
                             "same settings to resume, or give another --out to start clean")


def relax_outcome(args) -> None:
    from collections import Counter

    from .errors import NothingProducedError

    records = read_results(args.out, "--out") if Path(args.out).exists() else []
    ok = [r for r in records if r.get("status") in ("converged", "max_steps")]
    if not ok:
        counts = dict(Counter(r.get("status") for r in records))
        raise NothingProducedError(
            f"no structure was relaxed ({len(records)} results in {args.out}: {counts or 'none'}); unparseable "
            "inputs are counted in the statuses printed above"
        )


_BEFORE = {"relax": check_relax}
_AFTER = {"relax": relax_outcome}


def before_command(args) -> None:
    hook = _BEFORE.get(getattr(args, "command_name", None))
    if hook is not None:
        hook(args)


def after_command(args) -> None:
    hook = _AFTER.get(getattr(args, "command_name", None))
    if hook is not None:
        hook(args)
