"""MLIP relaxation of crystal structures: CHGNet and M3GNet (matgl), batched FIRE with Frechet cell filter.

``get_relaxer("chgnet")`` returns a :class:`Relaxer`. ``Relaxer.relax(structures)`` runs a *batched* relaxation:
all structures in flight go through one model forward on a batched graph per step, and a vectorised FIRE
(the same update rule, defaults and convergence test as ``ase.optimize.FIRE``) moves positions and cell together
with the semantics of ``ase.filters.FrechetCellFilter``: the cell degrees of freedom are the matrix logarithm of
the deformation gradient times ``exp_cell_factor`` (= number of atoms), the cell "forces" come from the model's
stress through the Frechet derivative of the matrix exponential, and a structure is converged when the largest
row norm of the (N + 3, 3) generalised force array is below ``fmax`` (eV/A). Converged structures leave the batch
and waiting ones enter. ``Relaxer.relax(..., batched=False)`` / :func:`relax_sequential_ase` runs the reference:
ASE FIRE + FrechetCellFilter with the model's own ASE calculator, one structure at a time.

A structure never crashes the batch: non-finite energy/forces/stress, volume blow-up or collapse
(``max_volume_ratio``), atoms without any neighbour inside the model cutoff, a relaxed structure with two atoms
closer than ``min_distance`` (0.5 A, an MLIP energy hole) ("exploded"), the per-structure step
cap ("max_steps", energy kept), the per-structure wall-clock timeout ("timeout") and any other exception
("error") are recorded per structure with a reason. With ``out_path`` each result is appended to a JSONL file
(:class:`plaid.io.JsonlWriter`, key ``id``) as soon as it finishes; a re-run skips finished ids.
"""

from .engine import FILTERS, Relaxer, get_relaxer, relax_sequential_ase
from .fire import FireParams
from .models import DEFAULT_ENERGY_SCALES, DEFAULT_M3GNET, CHGNetModel, M3GNetModel, Prediction, load_model
from .results import FAILED_STATUSES, STATUSES, RelaxResult, StructureExploded


def register(subparsers) -> None:
    from .cli import register as _register

    _register(subparsers)


__all__ = [
    "DEFAULT_ENERGY_SCALES",
    "DEFAULT_M3GNET",
    "FAILED_STATUSES",
    "FILTERS",
    "STATUSES",
    "CHGNetModel",
    "FireParams",
    "M3GNetModel",
    "Prediction",
    "RelaxResult",
    "Relaxer",
    "StructureExploded",
    "get_relaxer",
    "load_model",
    "relax_sequential_ase",
]
