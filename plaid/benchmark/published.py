"""Published benchmark rows, kept as data with their citations, set beside plaid's own rows in ``table.md``.

All numbers are percentages except RMSE (normalised by (V/N)^(1/3)) and the property distances d_rho, d_elem
(Wasserstein distances of density and number of elements). What each paper trained and tested on is stated in
``SOURCES``: they used the full CDVAE training splits and test splits, which are not the data plaid trains on here.
"""

from __future__ import annotations

SOURCES = {
    "crystallm": "Antunes et al., Crystal structure generation with autoregressive large language modeling, "
    "Nat. Commun. 15, 10570 (2024), Table 3 (CSP on the CDVAE/DiffCSP test splits; models trained on the "
    "benchmark's training split)",
    "plaid": "Xu et al., PLaID: Wyckoff-based text LLMs with DPO for crystal generation (2025), Table 1 "
    "(MP-20 unconditional generation; models trained on the MP-20 training split)",
    "cdvae": "Xie et al., Crystal Diffusion Variational Autoencoder, ICLR 2022, Table 2 (Perov-5 generation)",
}

# CSP: dataset -> model -> {n: (match rate %, RMSE or None)}, CrystaLLM Table 3 (which lists DiffCSP's rows too).
# Only the numbers checked against the paper are filled in; None is "not transcribed", never a guess.
CSP_PUBLISHED: dict[str, dict[str, dict[int, tuple[float | None, float | None]]]] = {
    "perov_5": {
        "CrystaLLM small": {1: (47.95, None), 20: (98.26, 0.0236)},
        "DiffCSP": {1: (52.02, None), 20: (98.60, 0.013)},
    },
    "carbon_24": {
        "CrystaLLM small": {1: (21.13, None), 20: (83.60, None)},
        "DiffCSP": {1: (None, None), 20: (88.47, None)},
    },
    "mp_20": {"CrystaLLM small": {1: (55.85, None), 20: (75.14, None)}},
    "mpts_52": {"CrystaLLM small": {1: (17.47, None), 20: (32.98, None)}},
}
CSP_SOURCE = "crystallm"

# Unconditional generation: dataset -> model -> metric -> value; None where the paper gives no number.
GEN_COLUMNS = (
    ("struct_valid", "Struct. valid %"),
    ("comp_valid", "Comp. valid %"),
    ("cov_recall", "COV-R %"),
    ("cov_precision", "COV-P %"),
    ("wdist_density", "d_rho"),
    ("wdist_num_elems", "d_elem"),
    ("stable_initial", "Stable (initial) %"),
    ("stable_relaxed", "Stable (relaxed) %"),
    ("sun", "S.U.N. %"),
)


def _row(sv, cv, cr, cp, dr, de, si=None, sr=None, sun=None) -> dict:
    keys = [k for k, _ in GEN_COLUMNS]
    return dict(zip(keys, (sv, cv, cr, cp, dr, de, si, sr, sun)))


GEN_PUBLISHED: dict[str, dict[str, tuple[dict, str]]] = {
    "mp_20": {
        "CDVAE": (_row(99.93, 86.93, 98.31, 99.35, 0.914, 1.654, 0.1, 3.6, 3.5), "plaid"),
        "DiffCSP": (_row(99.61, 82.23, 99.53, 99.35, 0.257, 0.403, 8.9, 12.5, 9.7), "plaid"),
        "FlowMM": (_row(96.43, 83.37, 99.47, 99.71, 0.291, 0.079, 4.1, 9.3, 6.3), "plaid"),
        "crystal-text-llm 7B": (_row(96.4, 93.3, 91.1, 94.9, 3.61, 1.06), "plaid"),
        "PLaID Wyckoff+DPO": (_row(99.67, 93.03, 98.07, 99.44, 1.500, 0.102, 8.6, 20.5, 14.2), "plaid"),
    },
    "perov_5": {
        "CDVAE": (_row(100.0, 98.59, 99.45, 98.46, None, None), "cdvae"),
    },
}
