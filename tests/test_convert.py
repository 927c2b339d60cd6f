"""plaid convert crystallm: a tiny nanoGPT/CrystaLLM checkpoint built here converts to a GPT-2 model whose logits
equal a reference nanoGPT forward (written below from the nanoGPT architecture) and a tokenizer with CrystaLLM's
ids that round-trips a CrystaLLM-style CIF."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from plaid.convert import (
    CRYSTALLM_ATOMS,
    CRYSTALLM_DIGITS,
    CRYSTALLM_KEYWORDS,
    CRYSTALLM_SYMBOLS,
    UNK,
    build_crystallm_tokenizer,
    convert_crystallm,
    crystallm_vocabulary,
)

SPACE_GROUPS = ["P1", "Pm", "Pm-3m", "P4/mmm", "Fm-3m"]
CIF = """data_SrTiO3
loop_
_atom_type_symbol
_symmetry_space_group_name_H-M Pm-3m
_cell_length_a 3.9050
_cell_length_b 3.9050
_cell_length_c 3.9050
_cell_angle_alpha 90.0000
_cell_angle_beta 90.0000
_cell_angle_gamma 90.0000
_symmetry_Int_Tables_number 221
_chemical_formula_structural SrTiO3
_chemical_formula_sum 'Sr1 Ti1 O3'
_cell_volume 59.5490
_cell_formula_units_Z 1
loop_
_symmetry_equiv_pos_site_id
_symmetry_equiv_pos_as_xyz
1 'x, y, z'
2 '-x, -y+1/2, z'
loop_
_atom_site_type_symbol
_atom_site_label
_atom_site_symmetry_multiplicity
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Sr Sr0 1 0.0000 0.0000 0.0000 1
Ti Ti1 1 0.5000 0.5000 0.5000 1
O O2 3 0.0000 0.5000 0.5000 1
"""


def nanogpt_forward(sd: dict, args: dict, idx: torch.Tensor) -> torch.Tensor:
    """nanoGPT's GPT.forward (pre-LN blocks, causal self-attention, exact GELU, tied head), from its state dict."""
    n_head, bias = args["n_head"], args["bias"]

    def linear(x, name):
        return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias") if bias else None)

    def ln(x, name):
        return F.layer_norm(x, (x.shape[-1],), sd[f"{name}.weight"], sd.get(f"{name}.bias") if bias else None, 1e-5)

    B, T = idx.shape
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    for i in range(args["n_layer"]):
        h = f"transformer.h.{i}"
        q, k, v = linear(ln(x, f"{h}.ln_1"), f"{h}.attn.c_attn").split(args["n_embd"], dim=2)
        q, k, v = (t.view(B, T, n_head, -1).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, -1)
        x = x + linear(y, f"{h}.attn.c_proj")
        x = x + linear(F.gelu(linear(ln(x, f"{h}.ln_2"), f"{h}.mlp.c_fc")), f"{h}.mlp.c_proj")
    return F.linear(ln(x, "transformer.ln_f"), sd["transformer.wte.weight"])


def tiny_checkpoint(vocab_size: int, bias: bool, compiled: bool) -> tuple[dict, dict]:
    """A random state dict with nanoGPT's names and shapes (nn.Linear weights are (out, in))."""
    gen = torch.Generator().manual_seed(0)
    E, L = 16, 2
    args = dict(n_layer=L, n_head=2, n_embd=E, block_size=64, bias=bias, vocab_size=vocab_size, dropout=0.0)

    def r(*shape):
        return 0.2 * torch.randn(*shape, generator=gen)

    sd = {"transformer.wte.weight": r(vocab_size, E), "transformer.wpe.weight": r(64, E),
          "transformer.ln_f.weight": 1 + r(E)}
    if bias:
        sd["transformer.ln_f.bias"] = r(E)
    for i in range(L):
        h = f"transformer.h.{i}"
        shapes = {"ln_1": (E,), "ln_2": (E,), "attn.c_attn": (3 * E, E), "attn.c_proj": (E, E),
                  "mlp.c_fc": (4 * E, E), "mlp.c_proj": (E, 4 * E)}
        for name, shape in shapes.items():
            sd[f"{h}.{name}.weight"] = (1 + r(*shape)) if name.startswith("ln") else r(*shape)
            if bias:
                sd[f"{h}.{name}.bias"] = r(shape[0])
    sd["lm_head.weight"] = sd["transformer.wte.weight"]  # nanoGPT ties them
    if compiled:
        sd = {f"_orig_mod.{k}": v for k, v in sd.items()}
    return {"model_args": args, "model": sd, "iter_num": 10, "best_val_loss": 1.0}, args


def test_vocabulary_layout():
    tokens = crystallm_vocabulary(SPACE_GROUPS)
    assert len(CRYSTALLM_ATOMS) == 89 and len(CRYSTALLM_KEYWORDS) == 26 and len(CRYSTALLM_SYMBOLS) == 13
    # CrystaLLM's 371 ids are 89 + 10 + 26 + 13 + 232 space groups + <unk>
    assert len(crystallm_vocabulary([f"G{i}" for i in range(232)])) == 371
    assert tokens[:3] == ["Si", "C", "Pb"] and tokens[89] == "0" and tokens[99] == "_cell_length_b"
    assert tokens[-1] == UNK and tokens[138] == "P1_sg"
    assert CRYSTALLM_DIGITS == list("0123456789")


def test_tokenizer_roundtrip_and_ids():
    tokens = crystallm_vocabulary(SPACE_GROUPS)
    tok = build_crystallm_tokenizer(tokens)
    ids = tok(CIF, add_special_tokens=False)["input_ids"]
    pieces = [tokens[i] for i in ids]
    # the space group after its keyword is one (marked) token; "_atom_type_symbol" is not in CrystaLLM's basic
    # vocabulary and becomes one <unk>, as CrystaLLM's \w+ fallback makes it
    assert "Pm-3m_sg" in pieces and pieces.count(UNK) == 1
    assert pieces[:6] == ["data_", "Sr", "Ti", "O", "3", "\n"]
    assert tok.decode(ids) == CIF.replace("_atom_type_symbol", UNK)
    known = CIF.replace("_atom_type_symbol\n", "")
    ids = tok(known, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == known
    # blanks collapse as in CrystaLLM
    assert tok.decode(tok("_cell_length_a   3.9\n", add_special_tokens=False)["input_ids"]) == "_cell_length_a 3.9\n"


@pytest.mark.parametrize("bias,compiled,source", [(True, False, "spacegroups"), (False, True, "meta")])
def test_convert_logits_match_nanogpt(tmp_path, bias, compiled, source):
    tokens = crystallm_vocabulary(SPACE_GROUPS)
    ckpt, args = tiny_checkpoint(len(tokens), bias, compiled)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    if source == "spacegroups":
        (tmp_path / "spacegroups.txt").write_text("\n".join(SPACE_GROUPS) + "\n")
        vocab = {"spacegroups": tmp_path / "spacegroups.txt"}
    else:
        with open(tmp_path / "meta.pkl", "wb") as fh:
            pickle.dump({"vocab_size": len(tokens), "itos": dict(enumerate(tokens)),
                         "stoi": {t: i for i, t in enumerate(tokens)}}, fh)
        vocab = {"meta": tmp_path / "meta.pkl"}
    out = convert_crystallm(tmp_path / "ckpt.pt", tmp_path / "hf", **vocab)

    from plaid.training.model import load_for_inference

    model, tok = load_for_inference(out, device="cpu")
    assert model.config.model_type == "gpt2" and tok.padding_side == "left"
    ids = torch.tensor([tok(CIF.replace("_atom_type_symbol\n", "")[:120], add_special_tokens=False)["input_ids"]])
    sd = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
    with torch.no_grad():
        ref = nanogpt_forward(sd, args, ids)
        got = model(ids, attention_mask=torch.ones_like(ids)).logits
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)

    # plaid's sampler runs on it (KV cache, left padding): untrained, so only the mechanics are checked
    from plaid.sampling import HFBackend, SamplingParams

    backend = HFBackend(model, tok, str(out))
    gens = backend.generate(["data_Sr", "data_"], [0, 1], SamplingParams(max_new_tokens=5))
    assert [g.num_tokens for g in gens] == [5, 5]


def test_convert_rejects_wrong_vocabulary(tmp_path):
    tokens = crystallm_vocabulary(SPACE_GROUPS)
    ckpt, _ = tiny_checkpoint(len(tokens) - 1, True, False)  # one id too few for this vocabulary
    torch.save(ckpt, tmp_path / "ckpt.pt")
    (tmp_path / "sg.txt").write_text("\n".join(SPACE_GROUPS))
    with pytest.raises(ValueError, match="embeds"):
        convert_crystallm(tmp_path / "ckpt.pt", tmp_path / "o", spacegroups=tmp_path / "sg.txt")
    with pytest.raises(ValueError, match="--meta"):
        convert_crystallm(tmp_path / "ckpt.pt", tmp_path / "o")
    # the CLI names the two ways to give the vocabulary
    cmd = [sys.executable, "-m", "plaid.cli", "convert", "crystallm", str(tmp_path / "ckpt.pt"), str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0 and "--meta" in proc.stderr and "--spacegroups" in proc.stderr
