"""Reference convex hulls for energy above hull (E_hull) of relaxed samples.

Sources, in the order :func:`load_hull` tries them:

* ``url`` (+ ``sha256``): downloaded once into ``plaid.paths.cache_dir()/hulls``, verified, then loaded as a path.
* ``path``: the Matbench Discovery MP hull ``2023-02-07-ppd-mp.pkl.gz`` (gzipped pickle of a pymatgen
  ``PatchedPhaseDiagram``; any pickled ``PhaseDiagram`` or list of entries works too), or MP computed(-structure)
  entries as ``.json``/``.json.gz`` (a list of entry dicts, a dict id -> entry dict, or Matbench Discovery's
  pandas layout ``{"entry": {id: entry dict}, ...}``).
* ``reference_csv``: an offline hull built from a dataset with formation energies (MP-20
  ``formation_energy_per_atom``, Perov-5 ``heat_ref``, both eV/atom) plus the MP elemental reference entries:
  total energy per atom = e_form + sum_i x_i mu_i, with mu_i the elemental reference energy per atom. The
  elemental references join the hull as its terminal entries.
* nothing: the MP hull under ``$PLAID_DATA_DIR/mp`` or the cache, else ``FileNotFoundError``.

E_hull = E_sample - E_hull-energy(composition), per atom, signed (negative = below the reference hull). The hull
energy of a composition only depends on the reference entries inside its chemical system, so hull energies are
computed from a per-chemical-system ``PhaseDiagram`` built on demand (exact, and identical to what a
``PatchedPhaseDiagram`` returns). MP2020 corrections (``MaterialsProject2020Compatibility``) are added to the
sample energy according to the energy scale the energy model *declares* (``energy_scale``): ``"mp2020"`` (already
on MP's corrected scale, e.g. CHGNet, trained on MPtrj with MP2020 corrections: not corrected again) or
``"mp_raw"`` (raw GGA/GGA+U energies, e.g. M3GNet-MP-2021.2.8: corrected). An undeclared scale is an error, never
a guess; ``apply_mp2020`` overrides it.

Hull kinds (``ReferenceHull.kind``, in report.json as ``hull.kind``): ``"file"`` (a hull file, e.g.
the Matbench Discovery PPD or MP entries) and ``"offline_reference"`` (formation energies of a dataset + MP
elemental references). MP-20 holds only metastable cells of <= 20 atoms, so an offline MP-20 hull lacks many MP
phases: it lies on or above the MP hull, E_hull against it is a lower bound of the MP E_hull, and stability rates
computed with it are upper bounds (``OFFLINE_HULL_WARNING``).
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import math
import os
import pickle
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from plaid.io import download as _download
from plaid.io import sha256_of

logger = logging.getLogger(__name__)

MP_PPD_NAME = "2023-02-07-ppd-mp.pkl.gz"
# Matbench Discovery's public copy of the MP hull (figshare). No checksum is published with it here: pass the
# sha256 of the file you trust to verify it.
MP_PPD_URL = "https://figshare.com/ndownloader/files/48241624"
MP_ELEMENTAL_REFS_NAME = "2023-02-07-mp-elemental-reference-entries.json.gz"
FORMATION_ENERGY_COLUMNS = ("formation_energy_per_atom", "heat_ref", "e_form", "formation_energy")
FORMULA_COLUMNS = ("formula", "pretty_formula", "reduced_formula")
ENERGY_SCALES = ("mp2020", "mp_raw")
OFFLINE_HULL_WARNING = (
    "offline hull built from the reference's formation energies + MP elemental references: it lacks the MP phases "
    "that are not in the reference (MP-20 holds only metastable cells of <= 20 atoms), so it lies on or above the "
    "MP hull; E_hull values are lower bounds and stable/metastable/S.U.N. rates are upper bounds. Pass --hull "
    "2023-02-07-ppd-mp.pkl.gz for numbers comparable with published tables."
)


# ------------------------------------------------------------------------------------------------- download


def download(url: str, sha256: str | None = None, dest_dir: str | os.PathLike | None = None,
             filename: str | None = None) -> Path:
    """Fetch a hull file into ``dest_dir`` (default ``cache_dir()/hulls``), verified by ``sha256`` (plaid.io.download)."""
    from plaid.paths import cache_dir

    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir() / "hulls"
    name = filename or Path(urllib.request.url2pathname(url.split("?")[0])).name or "download"
    return _download(url, dest_dir / name, sha256)


# -------------------------------------------------------------------------------------------------- loading


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115


def _decode_entry(obj: Any):
    from monty.json import MontyDecoder

    if isinstance(obj, dict):
        obj = MontyDecoder().process_decoded(obj)
    if not hasattr(obj, "energy_per_atom") or not hasattr(obj, "composition"):
        raise ValueError(f"not a pymatgen entry: {type(obj).__name__}")
    return obj


def read_entries(path: str | os.PathLike) -> list:
    """Entries from a JSON(.gz) file: a list of entry dicts, {id: entry dict}, or {"entry": {id: entry dict}}."""
    path = Path(path)
    with _open(path) as fh:
        data = json.load(fh)
    if isinstance(data, dict) and "@class" in data:
        data = [data]
    elif isinstance(data, dict) and isinstance(data.get("entry"), dict):
        data = list(data["entry"].values())
    elif isinstance(data, dict):
        data = list(data.values())
    return [_decode_entry(d) for d in data]


def read_elemental_refs(path: str | os.PathLike) -> dict[str, Any]:
    """Elemental reference entries (e.g. MP 2023-02-07), keyed by element symbol: the lowest-energy one each."""
    refs: dict[str, Any] = {}
    for entry in read_entries(path):
        if len(entry.composition.elements) != 1:
            continue
        el = entry.composition.elements[0].symbol
        if el not in refs or entry.energy_per_atom < refs[el].energy_per_atom:
            refs[el] = entry
    return refs


def _default_elemental_refs() -> Path | None:
    from plaid.paths import cache_dir, data_dir

    for root in (data_dir(), cache_dir()):
        if root is None:
            continue
        for candidate in (root / "mp" / MP_ELEMENTAL_REFS_NAME, root / MP_ELEMENTAL_REFS_NAME):
            if candidate.exists():
                return candidate
    return None


def entries_from_formation_energies(reference_csv: str | os.PathLike, elemental_refs: dict[str, Any],
                                    formation_energy_column: str | None = None) -> tuple[list, dict]:
    """PDEntries with total energy (e_form + sum_i x_i mu_i) * N from a CSV with formation energies (eV/atom).

    Compositions come from a formula column when present, else from the ``cif`` column. Rows whose formation
    energy is missing or whose elements lack a reference are skipped and counted in the returned info.
    """
    import pandas as pd
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition, Structure

    df = pd.read_csv(reference_csv)
    column = formation_energy_column or next((c for c in FORMATION_ENERGY_COLUMNS if c in df.columns), None)
    if column is None or column not in df.columns:
        raise ValueError(f"{reference_csv}: no formation energy column (tried {FORMATION_ENERGY_COLUMNS}); "
                         "pass formation_energy_column")
    formula_column = next((c for c in FORMULA_COLUMNS if c in df.columns), None)
    ids = df["material_id"].astype(str) if "material_id" in df.columns else df.index.astype(str)
    mu = {el: e.energy_per_atom for el, e in elemental_refs.items()}
    entries, skipped = [], defaultdict(int)
    for i, row in enumerate(df.itertuples(index=False)):
        e_form = getattr(row, column)
        if e_form is None or not math.isfinite(float(e_form)):
            skipped["missing formation energy"] += 1
            continue
        try:
            if formula_column is not None:
                comp = Composition(getattr(row, formula_column))
            else:
                comp = Structure.from_str(row.cif, fmt="cif").composition
        except Exception:  # noqa: BLE001 - a bad row is counted, not fatal
            skipped["unparseable composition"] += 1
            continue
        missing = [el.symbol for el in comp.elements if el.symbol not in mu]
        if missing:
            skipped[f"no elemental reference for {','.join(sorted(missing))}"] += 1
            continue
        n = comp.num_atoms
        energy = (float(e_form) + sum(comp.get_atomic_fraction(el) * mu[el.symbol] for el in comp.elements)) * n
        entries.append(PDEntry(comp, energy, name=str(ids.iloc[i])))
    return entries, {"formation_energy_column": column, "n_rows": len(df), "skipped": dict(skipped)}


# ----------------------------------------------------------------------------------------------------- hull


class ReferenceHull:
    """Energies above a reference convex hull; see the module docstring for sources and conventions."""

    def __init__(self, entries: list, source: dict, kind: str = "file"):
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        self.kind = kind
        self.source = dict(source)
        by_system: dict[frozenset, list] = defaultdict(list)
        for entry in entries:
            by_system[frozenset(el.symbol for el in entry.composition.elements)].append(entry)
        self._by_system = dict(by_system)
        self.elements = frozenset(next(iter(s)) for s in by_system if len(s) == 1)
        self.n_entries = len(entries)
        self._pds: dict[frozenset, PhaseDiagram] = {}

    # --------------------------------------------------------------- hull energies

    def _phase_diagram(self, system: frozenset):
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        if system not in self._pds:
            entries = []
            for k in range(1, len(system) + 1):
                for sub in itertools.combinations(sorted(system), k):
                    entries.extend(self._by_system.get(frozenset(sub), ()))
            self._pds[system] = PhaseDiagram(entries)
        return self._pds[system]

    def hull_energy_per_atom(self, composition) -> float:
        """Energy per atom of the reference hull at ``composition`` (eV/atom)."""
        from pymatgen.core import Composition

        comp = Composition(composition)
        system = frozenset(el.symbol for el in comp.elements)
        return float(self._phase_diagram(system).get_hull_energy_per_atom(comp))

    def missing_elements(self, composition) -> list[str]:
        from pymatgen.core import Composition

        return sorted(el.symbol for el in Composition(composition).elements if el.symbol not in self.elements)

    # --------------------------------------------------------------- E_hull

    def e_above_hull(self, structure_or_composition, energy_per_atom: float, energy_scale: str | None = None,
                     apply_mp2020: bool | None = None) -> tuple[float, str | None]:
        """(E_hull in eV/atom, None), or (NaN, reason) when it cannot be computed for this sample.

        ``energy_per_atom`` is the model energy of the relaxed structure; ``energy_scale`` the scale the model
        declares (``"mp2020"``: used as is; ``"mp_raw"``: MP2020 corrections added). ``apply_mp2020`` overrides
        the scale; with neither, the sample gets no E_hull (an undeclared scale is not guessed). Passing a
        Structure (not a Composition) lets MP2020 tell oxides from peroxides.
        """
        from pymatgen.core import Composition

        structure = structure_or_composition if hasattr(structure_or_composition, "lattice") else None
        try:
            comp = structure.composition if structure is not None else Composition(structure_or_composition)
        except Exception as exc:  # noqa: BLE001
            return math.nan, f"bad composition: {exc}"
        if energy_per_atom is None or not math.isfinite(float(energy_per_atom)):
            return math.nan, "no finite energy (relaxation failed)"
        missing = self.missing_elements(comp)
        if missing:
            return math.nan, f"element(s) {', '.join(missing)} not in the reference hull"
        energy = float(energy_per_atom)
        try:
            needed = mp2020_needed(energy_scale, apply_mp2020)
        except ValueError as exc:
            return math.nan, str(exc)
        if needed:
            energy, reason = mp2020_corrected_energy_per_atom(structure if structure is not None else comp, energy)
            if reason is not None:
                return math.nan, reason
        try:
            return energy - self.hull_energy_per_atom(comp), None
        except Exception as exc:  # noqa: BLE001 - e.g. a degenerate reference chemical system
            return math.nan, f"hull energy failed: {type(exc).__name__}: {exc}"

    def describe(self) -> dict:
        out = {
            "kind": self.kind,
            **self.source,
            "n_entries": self.n_entries,
            "n_elements": len(self.elements),
            "e_above_hull": "E_sample - E_hull(composition), eV/atom, signed (negative = below the reference hull)",
            "mp2020_correction": {
                "mp2020": "not applied (the energy model declares MP2020-compatible energies)",
                "mp_raw": "applied (MaterialsProject2020Compatibility on the model energy)",
            },
        }
        if self.kind != "file":
            out["warning"] = OFFLINE_HULL_WARNING
            out["rates_are_upper_bounds"] = True
        return out


def mp2020_needed(energy_scale: str | None, apply_mp2020: bool | None = None) -> bool:
    """Whether to add MP2020 corrections: explicit ``apply_mp2020``, else from the declared ``energy_scale``."""
    if apply_mp2020 is not None:
        return bool(apply_mp2020)
    if energy_scale not in ENERGY_SCALES:
        raise ValueError(f"energy scale {energy_scale!r} not declared as one of {ENERGY_SCALES}: the energy model "
                         "must say whether its energies are MP2020-corrected")
    return energy_scale == "mp_raw"


def mp2020_corrected_energy_per_atom(structure_or_composition, energy_per_atom: float) -> tuple[float, str | None]:
    """Energy per atom with MaterialsProject2020Compatibility corrections, as if from an MP-style VASP run.

    The entry is declared GGA+U with MP's U values when the most electronegative element is O or F and the
    composition has a U element (MPRelaxSet), else GGA; the POTCAR check is skipped (no VASP run).
    Returns (NaN, reason) when the compatibility scheme rejects the entry.
    """
    from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    compat = _mp2020()
    structure, comp = _noble_gases_first(structure_or_composition)
    anion = most_electronegative(comp)
    u_values = compat.u_settings.get(anion, {}) if anion is not None else {}
    hubbards = {el.symbol: float(u_values[el.symbol]) for el in comp.elements if el.symbol in u_values}
    params = {"run_type": "GGA+U" if hubbards else "GGA", "hubbards": hubbards, "software": "plaid-mlip"}
    energy = energy_per_atom * comp.num_atoms
    entry = (ComputedStructureEntry(structure, energy, parameters=params) if structure is not None
             else ComputedEntry(comp, energy, parameters=params))
    try:
        processed = compat.process_entry(entry, on_error="raise")
    except Exception as exc:  # noqa: BLE001
        return math.nan, f"MP2020 correction failed: {type(exc).__name__}: {exc}"
    if processed is None:
        return math.nan, "MP2020 compatibility rejected the entry"
    assert isinstance(compat, MaterialsProject2020Compatibility)
    return processed.energy_per_atom, None


def _no_x(el) -> bool:
    return not (el.X == el.X and math.isfinite(el.X))


def _noble_gases_first(structure_or_composition):
    """(structure or None, composition) with the elements that have no electronegativity (NaN) first.

    pymatgen's UCorrection sorts elements by X to find the anion; NaN makes that sort depend on element order.
    With the NaN elements first, the insertion sort leaves them in front and the true anion last."""
    from pymatgen.core import Composition, Structure

    if hasattr(structure_or_composition, "lattice"):
        structure = structure_or_composition
        if any(_no_x(el) for el in structure.composition.elements):
            structure = Structure.from_sites(sorted(structure.sites, key=lambda site: not _no_x(site.specie)))
        return structure, structure.composition
    comp = Composition(structure_or_composition)
    if any(_no_x(el) for el in comp.elements):
        comp = Composition({el: comp[el] for el in sorted(comp.elements, key=lambda el: not _no_x(el))})
    return None, comp


def most_electronegative(composition) -> str | None:
    """Symbol of the most electronegative element (Pauling X); elements without an X (noble gases: NaN) are
    skipped, since NaN breaks any ordering; None when no element has one."""
    rated = [el for el in composition.elements if not _no_x(el)]
    return max(rated, key=lambda el: el.X).symbol if rated else None


_COMPAT = None


def _mp2020():
    global _COMPAT
    if _COMPAT is None:
        from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

        _COMPAT = MaterialsProject2020Compatibility(check_potcar=False)
    return _COMPAT


def _entries_from_pickle(path: Path) -> tuple[list, str]:
    with _open(path) as fh:
        obj = pickle.load(fh)  # noqa: S301 - a file the user chose to trust
    if hasattr(obj, "all_entries"):  # PhaseDiagram / PatchedPhaseDiagram
        return list(obj.all_entries), type(obj).__name__
    if isinstance(obj, list | tuple):
        return [_decode_entry(e) for e in obj], "entries"
    raise ValueError(f"{path}: expected a pickled (Patched)PhaseDiagram or list of entries, got {type(obj).__name__}")


def _default_hull_path() -> Path | None:
    from plaid.paths import cache_dir, data_dir

    for root in (data_dir(), cache_dir() / "hulls", cache_dir()):
        if root is None:
            continue
        for candidate in (root / "mp" / MP_PPD_NAME, root / MP_PPD_NAME):
            if candidate.exists():
                return candidate
    return None


def load_hull(path: str | os.PathLike | None = None, *, reference_csv: str | os.PathLike | None = None,
              elemental_refs: str | os.PathLike | None = None, formation_energy_column: str | None = None,
              url: str | None = None, sha256: str | None = None) -> ReferenceHull:
    """Load a reference hull (see the module docstring for the accepted sources and their precedence)."""
    if url is not None:
        path = download(url, sha256, filename=MP_PPD_NAME if url == MP_PPD_URL else None)
    if path is None and reference_csv is None:
        path = _default_hull_path()
        if path is None:
            raise FileNotFoundError(
                f"no reference hull: pass path= ({MP_PPD_NAME} or MP entries .json.gz), url= (e.g. MP_PPD_URL, "
                f"downloaded into the cache), or reference_csv= with formation energies for an offline hull")
    if path is not None:
        path = Path(path)
        name = path.name.lower()
        if name.endswith((".pkl", ".pkl.gz", ".pickle", ".pickle.gz")):
            entries, kind = _entries_from_pickle(path)
        elif name.endswith((".json", ".json.gz")):
            entries, kind = read_entries(path), "entries"
        else:
            raise ValueError(f"{path}: unknown hull file type (expected .pkl.gz or .json.gz)")
        source = {"hull": f"{kind} from {path.name}", "path": str(path), "sha256": sha256_of(path)}
        if url is not None:
            source["url"] = url
        if elemental_refs is not None:
            refs = read_elemental_refs(elemental_refs)
            have = {next(iter(e.composition.elements)).symbol for e in entries if len(e.composition.elements) == 1}
            entries = entries + [e for el, e in refs.items() if el not in have]
            source["elemental_refs"] = str(elemental_refs)
        return ReferenceHull(entries, source, kind="file")

    refs_path = Path(elemental_refs) if elemental_refs is not None else _default_elemental_refs()
    if refs_path is None:
        raise FileNotFoundError(f"an offline hull from reference_csv needs elemental_refs= ({MP_ELEMENTAL_REFS_NAME})")
    refs = read_elemental_refs(refs_path)
    entries, info = entries_from_formation_energies(reference_csv, refs, formation_energy_column)
    source = {
        "hull": f"offline: formation energies from {Path(reference_csv).name} + MP elemental references",
        "reference_csv": str(reference_csv),
        "elemental_refs": str(refs_path),
        **info,
    }
    if info["formation_energy_column"] == "heat_ref":
        source["warning"] = (
            "Perov-5 heat_ref (CMR, GPAW/RPBE with its own elemental references) is not on the MP energy scale: "
            "E_hull against this hull is not comparable with MP-hull numbers (CHGNet formation energies of Perov-5 "
            "structures checked differ from heat_ref by 1-3 eV/atom)")
        logger.warning(source["warning"])
    logger.warning(OFFLINE_HULL_WARNING)
    return ReferenceHull(entries + list(refs.values()), source, kind="offline_reference")
