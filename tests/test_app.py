"""plaid serve: request validation, the JSON API on a real server with a tiny local model (valid JSON, CIFs that
pymatgen parses, HTTP 400 on bad input, concurrent requests, 503 when the queue is full) and the page in a real
headless browser (Debian's chromium + chromedriver): type a formula, press Generate, see the table and the 3D
view render."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("gradio", reason="plaid serve needs the app extra: pip install -e '.[dev]'")

from plaid.app.service import BadRequest, GenerationService, ServeConfig, parse_request  # noqa: E402


def volume_energy(structures):
    """Fast fake energy model (volume per atom), so the API tests do not wait for an MLIP."""
    return [{"score": s.volume / len(s), "energy_per_atom": s.volume / len(s)} for s in structures]


CONFIG = dict(max_samples=4, max_atoms=12, max_new_tokens=200, validity="structural", mcts_iterations=4,
              time_limit_s=120)


@pytest.mark.parametrize(
    "payload, message",
    [
        ([1, 2], "JSON object"),
        ({"formula": "Xx2O"}, "bad formula"),
        ({}, "formula is required"),
        ({"formula": "NaCl", "colour": "red"}, "unknown field"),
        ({"formula": "NaCl", "num_samples": 5}, "between 1 and 4"),
        ({"formula": "NaCl", "num_samples": "many"}, "integer"),
        ({"formula": "NaCl", "z": 2.5}, "integer"),
        ({"formula": "NaCl", "mode": "beam"}, "mode must be"),
        ({"formula": "NaCl", "spacegroup": 231}, "bad space group"),
        ({"formula": "BaTiO3", "z": 1, "spacegroup": 225}, "no crystal of BaTiO3 with Z=1 in space group 225"),
        ({"formula": "BaTiO3", "z": 3}, "more than 12 atoms"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(payload, message):
    with pytest.raises(BadRequest, match=message):
        parse_request(payload, ServeConfig(**CONFIG))


def test_zscan_keeps_only_feasible_z():
    req = parse_request({"formula": "NaCl"}, ServeConfig(**CONFIG))
    assert req.zs == (1, 2, 3, 4, 6)  # Z = 8 is 16 atoms > max_atoms 12
    req = parse_request({"formula": "BaTiO3", "spacegroup": "Pm-3m"}, ServeConfig(**CONFIG))
    assert req.zs == (1,) and req.spacegroup == 221  # Pm-3m holds BaTiO3 at Z = 1 only (within 12 atoms)


# ------------------------------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch
    import uvicorn

    from plaid.app.web import build_app
    from plaid.sampling import HFBackend
    from plaid.tokenizer import build_tokenizer
    from plaid.training.model import create_local_model

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = create_local_model("plaid-tiny-llama", build_tokenizer("wyckoff"), tmp_path_factory.mktemp("tiny"))
    service = GenerationService(HFBackend.load(path, device="cpu"), ServeConfig(**CONFIG), volume_energy)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(build_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", service
    uv.should_exit = True
    thread.join(timeout=10)
    torch.set_num_threads(threads)


def _post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/api/generate", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _check_result(result: dict, formula: str):
    from pymatgen.core import Composition, Structure

    assert set(result) >= {"structures", "errors"}
    for s in result["structures"]:
        assert set(s) >= {"cif", "formula", "spacegroup", "valid", "energy_per_atom", "e_hull"}
        structure = Structure.from_str(s["cif"], fmt="cif")
        assert structure.composition.reduced_formula == Composition(formula).reduced_formula
        assert s["e_hull"] is None  # no hull on this server
        if s["valid"]:
            assert s["energy_per_atom"] == pytest.approx(structure.volume / len(structure), rel=1e-3)


def test_api_generates_parseable_cifs(server):
    url, _ = server
    status, result = _post(url, {"formula": "NaCl", "num_samples": 2, "mode": "constrained", "z": 2})
    assert status == 200
    assert result["z_tried"] == [2] and len(result["structures"]) == 2  # the grammar: every sample decodes
    _check_result(result, "NaCl")
    from pymatgen.core import Structure

    assert all(len(Structure.from_str(s["cif"], fmt="cif")) == 4 for s in result["structures"])  # Na2 Cl2


def test_api_zscan_and_mcts(server):
    url, _ = server
    status, result = _post(url, {"formula": "KCl", "num_samples": 2, "mode": "mcts"})
    assert status == 200, result
    assert result["z_tried"][0] == 1 and set(result["z_tried"]) <= {1, 2, 3, 4, 6}
    _check_result(result, "KCl")
    if any(s["valid"] for s in result["structures"]):
        assert result["structures"][0]["valid"]  # best (valid, lowest energy) first
        assert len(result["z_tried"]) == 1  # the scan stops at the first Z with a valid structure
    status, result = _post(url, {"formula": "KCl", "mode": "sample", "z": 1})
    assert status == 200 and isinstance(result["errors"], list)  # unconstrained: failures are reported


@pytest.mark.parametrize("body", [b"not json", {"formula": "Qq"}, {"formula": "NaCl", "num_samples": 99},
                                  {"formula": "BaTiO3", "z": 1, "spacegroup": 225}])
def test_api_bad_input_is_400_with_a_message(server, body):
    url, _ = server
    status, result = _post(url, body)
    assert status == 400 and result["error"]


def test_api_concurrent_requests_are_queued(server):
    url, service = server
    before = service.served
    results = [None] * 3

    def call(i):
        results[i] = _post(url, {"formula": "NaCl", "num_samples": 1, "z": 1 + i})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [r[0] for r in results] == [200, 200, 200]
    for (_, result), z in zip(results, (1, 2, 3)):
        assert result["z_tried"] == [z]
        _check_result(result, "NaCl")
    assert service.served == before + 3


def test_api_full_queue_is_503(server):
    url, service = server
    limit = service.config.max_queue
    service.config.max_queue = 0  # nobody may wait: the request is refused, not run
    try:
        status, result = _post(url, {"formula": "NaCl", "z": 1})
    finally:
        service.config.max_queue = limit
    assert status == 503 and "waiting" in result["error"]


# ------------------------------------------------------------------------------------------------ the browser


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run tries this)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1300"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_page_generates_and_renders_the_3d_view(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _ = server
    driver = _browser()
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 60)
        box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#plaid-formula textarea, #plaid-formula input"))
        box.send_keys("NaCl")
        driver.find_element(By.CSS_SELECTOR, "#plaid-generate").click()
        WebDriverWait(driver, 240).until(
            lambda d: "decoded structures" in d.find_element(By.CSS_SELECTOR, "#plaid-status").text)
        table = driver.find_element(By.CSS_SELECTOR, "#plaid-table").text
        assert "NaCl" in table and "energy" in table
        viewer = WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.CSS_SELECTOR, ".plaid-viewer[data-rendered-atoms]"))
        assert int(viewer.get_attribute("data-rendered-atoms")) >= 2
        # the canvas really has a drawing: some pixels are neither white nor transparent
        drawn = driver.execute_script(
            "var c = document.querySelector('.plaid-viewer canvas');"
            "var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, n = 0;"
            "for (var i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i+1] < 200 || d[i+2] < 200) n++;"
            "return n;")
        assert drawn > 100
        assert "_cell_length_a" in driver.find_element(By.CSS_SELECTOR, "#plaid-cif").text
        # nothing was loaded from another host (no CDN)
        hosts = driver.execute_script(
            "return performance.getEntriesByType('resource').map(function (e) { return e.name; });")
        assert all(h.startswith(url) or h.startswith("data:") or h.startswith("blob:") for h in hosts), hosts
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()


def test_viewer_data_rock_salt_and_perovskite():
    from pymatgen.core import Lattice, Structure

    from plaid.app.viewer import structure_view, viewer_html

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    view = structure_view(nacl)
    # 8 sites + their images on the faces: 14 Na (corners + face centres) and 13 Cl (edge centres + body centre)
    assert sorted(a["el"] for a in view["atoms"]).count("Na") == 14 and len(view["atoms"]) == 27
    pairs = {tuple(sorted((view["atoms"][i]["el"], view["atoms"][j]["el"]))) for i, j in view["bonds"]}
    assert pairs == {("Cl", "Na")}  # Na-Cl at 2.82 A; no Na-Na or Cl-Cl at 3.99 A
    assert len(view["bonds"]) == 54  # the 3x3x3 grid of shown atoms: 3 axes x 9 lines x 2 nearest-neighbour pairs
    bto = Structure(Lattice.cubic(4.0), ["Ba", "Ti", "O", "O", "O"],
                    [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    pairs = {tuple(sorted((structure_view(bto)["atoms"][i]["el"], structure_view(bto)["atoms"][j]["el"])))
             for i, j in structure_view(bto)["bonds"]}
    assert pairs == {("Ba", "O"), ("O", "Ti")}
    assert 'class="plaid-viewer"' in viewer_html(bto) and "&quot;Ba&quot;" in viewer_html(bto)


def test_serve_cli_refuses_a_missing_model(tmp_path, capsys):
    from plaid.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert "no model directory" in capsys.readouterr().err


def test_served_prompts_use_the_models_prompt_style(tmp_path, monkeypatch):
    import plaid.sampling as sampling
    from plaid.app.cli import build_service

    model = tmp_path / "model"
    model.mkdir()
    (model / "plaid_run.json").write_text(
        json.dumps({"plaid_args": {"prompt_style": "plaid-paper", "representation": "wyckoff-plaid"}})
    )
    monkeypatch.setattr(sampling, "load_backend", lambda *a, **k: object())
    service = build_service(str(model), relaxer="none")
    assert service.config.prompt_style == "plaid-paper" and service.config.representation == "wyckoff-plaid"
