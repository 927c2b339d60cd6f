"""Preference-pair construction on hand-made labels with known answers, and the DatasetDict it writes."""

from __future__ import annotations

import json

import pytest

from plaid.preferences import Label, PairingError, build_pairs, split_pairs
from plaid.preferences.dataset import make_preference_dataset
from plaid.preferences.labels import labels_from_evaluation


def lab(i, e_hull=None, status="ok", prompt="P", novel=None, sg=None, req=None):
    return Label(sample_id=str(i), prompt=prompt, text=f"text-{i}", status=status, e_hull=e_hull, is_novel=novel,
                 spacegroup=sg, requested_spacegroup=req)


def test_basic_pairs_each_accepted_with_k_rejected():
    labels = [lab(0, -0.05), lab(1, 0.05)] + [lab(i, 0.5) for i in range(2, 7)] + [
        lab(7, status="unparsed"), lab(8, status="invalid"), lab(9, status="unlabelled")]
    pairs, stats = build_pairs(labels, "basic", ratio=3, threshold=0.08, seed=0)
    assert stats["n_accepted"] == 2 and stats["n_rejected"] == 7 and len(pairs) == 6
    for p in pairs:
        assert p["chosen_id"] in {"0", "1"} and p["rejected_id"] not in {"0", "1", "9"}
        assert p["chosen"] == f"text-{p['chosen_id']}" and p["rejected"] == f"text-{p['rejected_id']}"
        assert p["chosen_e_hull"] < 0.08
        assert p["rejected_e_hull"] is None or p["rejected_e_hull"] >= 0.08
    for cid in ("0", "1"):
        rejected = [p["rejected_id"] for p in pairs if p["chosen_id"] == cid]
        assert len(rejected) == len(set(rejected)) == 3
    assert len({p["rejected_id"] for p in pairs}) == 6  # spread over the rejected, not the same three twice
    assert stats["status_counts"] == {"ok": 7, "unparsed": 1, "invalid": 1, "unlabelled": 1}
    assert build_pairs(labels, "basic", seed=0)[0] == pairs  # seeded


def test_pairs_never_cross_prompts():
    labels = [lab(0, -0.1, prompt="A"), lab(1, 0.3, prompt="A"), lab(2, -0.1, prompt="B"), lab(3, 0.4, prompt="B")]
    pairs, stats = build_pairs(labels, "basic", ratio=3)
    assert stats["n_prompts"] == 2 and len(pairs) == 2
    assert {(p["chosen_id"], p["rejected_id"]) for p in pairs} == {("0", "1"), ("2", "3")}


def test_tiered_ranks_novel_stable_over_known_stable_over_metastable():
    labels = [lab(0, -0.02, novel=True), lab(1, -0.01, novel=False), lab(2, 0.05, novel=True), lab(3, 0.3),
              lab(4, status="unparsed")]
    pairs, stats = build_pairs(labels, "tiered", ratio=4)
    assert stats["tier_counts"] == {"novel_stable": 1, "stable": 1, "metastable": 1, "unstable": 1, "bad": 1}
    got = {(p["chosen_id"], p["rejected_id"]) for p in pairs}
    assert got == {(c, r) for c in "0123" for r in "01234" if int(r) > int(c)}
    assert {p["pair_type"] for p in pairs if p["chosen_id"] == "0"} >= {"novel_stable>stable", "novel_stable>bad"}


def mlab(i, e_hull, cls=None, novel=None, rep=False, metastable=None, status="ok"):
    """A label as the M.S.U.N. classes leave it (threshold 0.5 here)."""
    return Label(sample_id=str(i), prompt="P", text=f"text-{i}", status=status, e_hull=e_hull,
                 is_metastable=(e_hull is not None and e_hull < 0.5) if metastable is None else metastable,
                 msun_class=cls, msun_novel=novel, is_msun=rep if cls is not None else False)


def test_msun_rewards_each_novel_metastable_class_once_and_rejects_known_ones():
    labels = [
        mlab(0, 0.1, cls="0", novel=True, rep=True),    # novel class A, its representative
        mlab(1, 0.2, cls="0", novel=True),              # A again: neither side
        mlab(2, 0.3, cls="2", novel=True, rep=True),    # novel class B
        mlab(3, 0.05, cls="3", novel=False),            # a known structure (diamond), low energy: rejected
        mlab(4, 0.06, cls="3", novel=False),
        mlab(5, 0.4, novel=None),                       # metastable, class undecided: neither
        mlab(6, 1.2), mlab(7, 2.0),                     # unstable: rejected
        mlab(8, None, status="relax_failed", metastable=False),
    ]
    pairs, stats = build_pairs(labels, "msun", ratio=10, threshold=0.5)
    assert stats["role_counts"] == {"msun": 2, "neither": 2, "known_metastable": 2, "unstable": 2, "bad": 1}
    assert stats["n_accepted"] == 2 and stats["n_rejected"] == 5
    got = {(p["chosen_id"], p["rejected_id"]) for p in pairs}
    assert got == {(c, r) for c in "02" for r in "34678"}
    assert {p["pair_type"] for p in pairs} == {"msun>known_metastable", "msun>unstable", "msun>bad"}
    # basic mode on the same labels rewards the known structure: what msun is for
    basic, _ = build_pairs(labels, "basic", ratio=10, threshold=0.5)
    assert {"3", "4"} <= {p["chosen_id"] for p in basic}


def test_msun_refuses_labels_of_another_threshold_and_labels_without_novelty():
    at_008 = [mlab(0, 0.3, metastable=False), mlab(1, 1.0, metastable=False)]  # classes computed at 0.08
    with pytest.raises(PairingError, match="another metastable threshold"):
        build_pairs(at_008, "msun", threshold=0.5)
    no_reference = [mlab(0, 0.1, cls="0", novel=None), mlab(1, 1.0)]
    with pytest.raises(PairingError, match="training reference"):
        build_pairs(no_reference, "msun", threshold=0.5)
    nothing_metastable = [mlab(0, 0.9), mlab(1, 1.0)]  # the reference cannot help: nothing to reward
    with pytest.raises(PairingError, match="no accepted sample"):
        build_pairs(nothing_metastable, "msun", threshold=0.5)


def test_spacegroup_mode_needs_the_requested_group():
    labels = [lab(0, -0.1, sg=221, req=221, prompt="Q"), lab(1, -0.1, sg=99, req=221, prompt="Q"),
              lab(2, 0.5, sg=221, req=221, prompt="Q"), lab(3, -0.1, prompt="U")]
    pairs, _ = build_pairs(labels, "spacegroup", ratio=3)
    assert {(p["chosen_id"], p["rejected_id"]) for p in pairs} == {("0", "1"), ("0", "2")}
    with pytest.raises(PairingError, match="space-group-conditioned"):
        build_pairs([lab(0, -0.1)], "spacegroup")


def test_degenerate_inputs_raise_clear_errors():
    with pytest.raises(PairingError, match="no accepted sample"):
        build_pairs([lab(0, 0.3), lab(1, status="unparsed")], "basic")
    with pytest.raises(PairingError, match="no rejected sample"):
        build_pairs([lab(0, -0.3), lab(1, 0.01)], "basic")
    with pytest.raises(PairingError, match="never share a prompt"):
        build_pairs([lab(0, -0.3, prompt="A"), lab(1, 0.5, prompt="B")], "basic")
    with pytest.raises(PairingError, match="too few"):
        split_pairs([{"prompt": "A"}], 0.1, 0)


def test_split_by_prompt_keeps_prompts_apart():
    pairs = [{"prompt": f"p{i % 5}", "n": i} for i in range(50)]
    train, test, by = split_pairs(pairs, 0.2, seed=1)
    assert by == "prompt" and len(train) + len(test) == 50 and test
    assert not ({p["prompt"] for p in train} & {p["prompt"] for p in test})
    train, test, by = split_pairs([{"prompt": "one", "n": i} for i in range(10)], 0.2, seed=1)
    assert by == "pair" and len(test) == 2


def _samples_file(tmp_path, labels):
    path = tmp_path / "samples.jsonl"
    with open(path, "w") as fh:
        for x in labels:
            fh.write(json.dumps({"sample_id": x.sample_id, "prompt": x.prompt, "text": x.text,
                                 "parsed": x.status != "unparsed", "cif": None if x.status == "unparsed" else "CIF",
                                 "error": "bad" if x.status == "unparsed" else None, "conditions": {}}) + "\n")
    return path


def _outcomes_dir(path, labels):
    """An evaluation directory whose outcomes give ``labels`` (e_hull, parsed or not)."""
    from plaid.evaluation.outcome import Outcome, OutcomeSettings, apply_thresholds, write_outcomes

    outcomes = [Outcome(sample_id=x.sample_id, prompt=x.prompt, text=x.text, parsed=x.status != "unparsed",
                        error="bad" if x.status == "unparsed" else None, struct_valid=x.status != "unparsed",
                        comp_valid=x.status != "unparsed", valid=x.status != "unparsed",
                        relax_status="converged" if x.status != "unparsed" else None, e_hull=x.e_hull,
                        energies_computed=True) for x in labels]
    apply_thresholds(outcomes, OutcomeSettings())
    write_outcomes(path, outcomes, OutcomeSettings(), {})


def test_dataset_from_evaluate_labels_and_nothing_written_when_degenerate(tmp_path):
    from datasets import load_from_disk

    labels = [lab(i, e, prompt=f"p{i % 3}") for i, e in enumerate([-0.1, 0.2, 0.3, 0.5, -0.05, 0.6, 0.7, 0.9, 0.01])]
    labels.append(lab(9, status="unparsed", prompt="p0"))
    samples = _samples_file(tmp_path, labels)
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    _outcomes_dir(eval_dir, labels)
    parsed = labels_from_evaluation([json.loads(line) for line in samples.read_text().splitlines()], eval_dir)
    assert [x.status for x in parsed] == ["ok"] * 9 + ["unparsed"]
    out = tmp_path / "pairs"
    dataset, stats = make_preference_dataset(samples, out, eval_dir=eval_dir, ratio=2, test_size=0.34, seed=0)
    reloaded = load_from_disk(str(out))
    rows = [r for split in reloaded.values() for r in split]
    assert len(rows) == stats["n_pairs"] == 6
    assert set(reloaded["train"].column_names) >= {"prompt", "chosen", "rejected", "chosen_e_hull", "rejected_e_hull"}
    assert all(r["chosen_e_hull"] < 0.08 for r in rows)
    assert "ratio 1:2" in (out / "README.md").read_text()

    bad = tmp_path / "bad_eval"
    bad.mkdir()
    _outcomes_dir(bad, [lab(x.sample_id, 0.5, prompt=x.prompt) for x in labels])
    with pytest.raises(PairingError, match="no accepted"):
        make_preference_dataset(samples, tmp_path / "empty", eval_dir=bad)
    assert not (tmp_path / "empty").exists()


def test_label_samples_statuses_and_resume(tmp_path, perov_csv, perov_structures, m3gnet_path):
    """Real M3GNet relaxation + offline hull: a perovskite is labelled, atoms 0.3 A apart are invalid, an
    unparsed sample stays unparsed, an element M3GNet does not know fails its relaxation; a re-run relaxes nothing."""
    import pandas as pd
    from pymatgen.core import Lattice, Structure

    from plaid.hull import load_hull
    from plaid.preferences import label_samples
    from plaid.relax import get_relaxer
    from plaid.representations import get

    reference = tmp_path / "ref.csv"
    pd.read_csv(perov_csv, nrows=300).to_csv(reference, index=False)
    hull = load_hull(None, reference_csv=reference)
    rep = get("wyckoff")
    good = perov_structures[0]
    close = Structure(Lattice.cubic(4.0), ["Sr", "Ti"], [[0, 0, 0], [0.075, 0, 0]])
    unknown = Structure(Lattice.cubic(3.5), ["Lr"], [[0, 0, 0]])

    def record(i, structure=None, text=None):
        text = text if text is not None else rep.encode(structure)
        return {"sample_id": str(i), "prompt": "P", "text": text, "parsed": structure is not None,
                "cif": structure.to(fmt="cif") if structure is not None else None, "representation": "wyckoff",
                "error": None if structure is not None else "truncated"}

    records = [record(0, good), record(1, close), record(2, text="Sr1 Ti1"), record(3, unknown)]
    relaxer = get_relaxer("m3gnet", model_path=m3gnet_path, max_steps=5)
    labels = label_samples(records, tmp_path / "labels", relaxer=relaxer, hull=hull, progress=False)
    assert [lab.status for lab in labels] == ["ok", "invalid", "unparsed", "relax_failed"]
    assert labels[0].e_hull is not None and labels[0].energy_per_atom < 0 and labels[0].spacegroup
    assert "0.3" in labels[1].reason or "distance" in labels[1].reason
    assert labels[3].reason.startswith("error") and labels[3].e_hull is None

    def no_relaxation(todo):
        assert not todo, "a labelled sample was relaxed again"
        return iter(())

    relaxer._run_batched = no_relaxation  # the cached relaxations must be reused as they are
    again = label_samples(records, tmp_path / "labels", relaxer=relaxer, hull=hull, progress=False)
    assert [lab.to_record() for lab in again] == [lab.to_record() for lab in labels]


def test_msun_pairs_end_to_end_from_given_labels(tmp_path):
    """`plaid pairs --mode msun`: novelty against a real reference through the S.U.N. matcher; the known rock salt
    (lowest E_hull) is rejected, the novel one is chosen once, its copy is on neither side."""
    import pandas as pd
    from datasets import load_from_disk
    from pymatgen.core import Lattice, Structure

    from plaid.cli import main
    from plaid.representations import get

    def rocksalt(a, b, x):
        return Structure.from_spacegroup("Fm-3m", Lattice.cubic(x), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])

    nacl, kbr = rocksalt("Na", "Cl", 5.60), rocksalt("K", "Br", 6.60)
    cscl = Structure(Lattice.cubic(3.4), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    pd.DataFrame({"material_id": ["r0"], "cif": [nacl.to(fmt="cif")]}).to_csv(tmp_path / "ref.csv", index=False)
    rep = get("wyckoff")
    cscl2 = Structure(Lattice.cubic(3.5), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rows = [(nacl, 0.01), (rocksalt("Na", "Cl", 5.64), 0.02), (kbr, 0.1), (rocksalt("K", "Br", 6.64), 0.2),
            (cscl, 1.0), (cscl2, 2.0)]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({
        "sample_id": str(i), "prompt": "P", "text": rep.encode(s), "parsed": True, "cif": s.to(fmt="cif"),
        "representation": "wyckoff", "e": e}) + "\n" for i, (s, e) in enumerate(rows)))
    out = tmp_path / "pairs"
    assert main(["pairs", str(samples), "--out", str(out), "--e-hull-column", "e", "--reference",
                 str(tmp_path / "ref.csv"), "--mode", "msun", "--threshold", "0.5", "--ratio", "5",
                 "--test-size", "0"]) == 0
    report = json.loads((out / "pairs_report.json").read_text())
    assert report["role_counts"] == {"known_metastable": 2, "msun": 1, "neither": 1, "unstable": 2}
    got = {(r["chosen_id"], r["rejected_id"], r["pair_type"]) for r in load_from_disk(str(out))["train"]}
    assert got == {("2", "0", "msun>known_metastable"), ("2", "1", "msun>known_metastable"),
                   ("2", "4", "msun>unstable"), ("2", "5", "msun>unstable")}
