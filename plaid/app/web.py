"""The ``plaid serve`` web server: a Gradio page and a JSON API (``POST /api/generate``) on one FastAPI app.

Both go through one ``GenerationService`` (one lock on the model, a bounded wait queue, a time limit). The page's
events also use Gradio's queue (one at a time, ``max_queue`` waiting). The 3D viewer is ``static/viewer.js``,
served from ``/plaid-viewer.js`` and loaded in the page head: nothing comes from a CDN.
"""


import logging
import math

from .service import MODES, BadRequest, Busy, GenerationService

logger = logging.getLogger(__name__)

TABLE_HEADERS = ["#", "formula", "Z", "space group", "valid", "energy (eV/atom)", "E_hull (eV/atom)", "note"]


def _cell_text(value, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else ""
    return str(value)


def table_rows(result: dict) -> list[list[str]]:
    rows = []
    for i, s in enumerate(result["structures"], start=1):
        rows.append([str(i), s["formula"] or "", str(s["z"]), _cell_text(s["spacegroup"]),
                     "yes" if s["valid"] else "no", _cell_text(s["energy_per_atom"]), _cell_text(s["e_hull"]),
                     s["reason"] or ""])
    return rows


def build_api(service: GenerationService):
    """A FastAPI app with ``POST /api/generate``, ``GET /api/health`` and the viewer script."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse

    from .viewer import VIEWER_JS

    app = FastAPI(title="plaid", description="Generate crystal structures with a plaid model")

    @app.post("/api/generate")
    async def generate(request: Request):
        try:
            payload = await request.json()
        except Exception:  # noqa: BLE001 - any unreadable body is the client's error
            return JSONResponse({"error": "the request body must be a JSON object"}, status_code=400)
        try:
            result = await run_in_threadpool(service.generate, payload)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Busy as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        keys = ("cif", "formula", "spacegroup", "valid", "energy_per_atom", "e_hull", "z", "reason", "text")
        return {
            "structures": [{k: s[k] for k in keys} for s in result["structures"]],
            "errors": result["errors"],
            "z_tried": result["z_tried"],
            "seconds": result["seconds"],
        }

    @app.get("/api/health")
    def health():
        return {"status": "ok", "served": service.served, "model": getattr(service.backend, "model_path", None)}

    @app.get("/plaid-viewer.js")
    def viewer_js():
        return FileResponse(VIEWER_JS, media_type="application/javascript")

    return app


def build_demo(service: GenerationService):
    """The Gradio page."""
    import gradio as gr

    from .viewer import viewer_html

    cfg = service.config
    hull_note = " E_hull is computed on the server's hull." if service.hull is not None else ""
    described = service.energy.describe() if hasattr(service.energy, "describe") else {}
    energy_note = (f" Energies: {described.get('energy_model', 'custom')}." if service.energy is not None
                   else " No energy model is loaded.")

    def run(formula, z, spacegroup, num, mode):
        payload = {"formula": formula or "", "num_samples": int(num or 1), "mode": mode}
        if z not in (None, "", 0) and not (isinstance(z, float) and math.isnan(z)):
            payload["z"] = z  # 0 or empty: scan
        if spacegroup:
            payload["spacegroup"] = spacegroup.strip()
        try:
            result = service.generate(payload)
        except (BadRequest, Busy) as exc:
            return (f"**Error:** {exc}", [], gr.update(choices=[], value=None), viewer_html(None), "", None, [])
        structures = result["structures"]
        valid = [s for s in structures if s["valid"]]
        lines = [f"{len(valid)} valid of {len(structures)} decoded structures "
                 f"(Z tried: {', '.join(map(str, result['z_tried']))}; {result['seconds']:.1f} s)."]
        lines += [f"- {e}" for e in result["errors"]]
        if not valid:
            shown = "\n\n".join(result["texts"][:3]) or "(nothing was generated)"
            lines.append(f"\nNo valid structure was found. Generated text:\n\n```\n{shown}\n```")
        choices = [f"{i}: {s['formula']} Z={s['z']}" for i, s in enumerate(structures, start=1)]
        first = structures[0] if structures else None
        return ("\n".join(lines), table_rows(result), gr.update(choices=choices, value=choices[0] if choices else None),
                _view(first), first["cif"] if first else "", _cif_file(first), structures)

    def select(choice, structures):
        if not choice or not structures:
            return viewer_html(None), "", None
        s = structures[int(choice.split(":")[0]) - 1]
        return _view(s), s["cif"], _cif_file(s)

    with gr.Blocks(title="plaid: crystal structure generation") as demo:
        gr.Markdown("## plaid: generate a crystal structure\nEnter a formula; with Z = 0 the server scans "
                    "Z = 1, 2, 3, 4, 6, 8 and stops at the first Z that gives a valid structure." + energy_note + hull_note)
        with gr.Row():
            formula = gr.Textbox(label="Formula", placeholder="e.g. BaTiO3", elem_id="plaid-formula")
            z = gr.Number(label="Z (formula units; 0 = scan 1, 2, 3, 4, 6, 8)", value=0, precision=0, minimum=0,
                          elem_id="plaid-z")
            spacegroup = gr.Textbox(label="Space group (optional)", placeholder="e.g. 221 or Pm-3m",
                                    elem_id="plaid-spacegroup")
        with gr.Row():
            num = gr.Slider(1, cfg.max_samples, value=min(4, cfg.max_samples), step=1, label="Structures",
                            elem_id="plaid-num")
            mode = gr.Radio(list(MODES), value="constrained" if cfg.representation != "cif" else "sample",
                            label="Decoding", elem_id="plaid-mode")
            button = gr.Button("Generate", variant="primary", elem_id="plaid-generate")
        status = gr.Markdown(elem_id="plaid-status")
        table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, elem_id="plaid-table", wrap=True)
        choice = gr.Dropdown(label="Structure to view", choices=[], elem_id="plaid-choice")
        with gr.Row():
            view = gr.HTML(viewer_html(None), elem_id="plaid-view")
            cif = gr.Code(label="CIF", elem_id="plaid-cif")
        download = gr.File(label="Download CIF", elem_id="plaid-download")
        state = gr.State([])
        button.click(run, [formula, z, spacegroup, num, mode], [status, table, choice, view, cif, download, state])
        formula.submit(run, [formula, z, spacegroup, num, mode], [status, table, choice, view, cif, download, state])
        choice.change(select, [choice, state], [view, cif, download])
    demo.queue(default_concurrency_limit=1, max_size=cfg.max_queue)
    return demo


def _view(structure: dict | None) -> str:
    from pymatgen.core import Structure

    from .viewer import viewer_html

    if structure is None or not structure.get("cif"):
        return viewer_html(None)
    return viewer_html(Structure.from_str(structure["cif"], fmt="cif"))


def _cif_file(structure: dict | None):
    import tempfile
    from pathlib import Path

    if structure is None or not structure.get("cif"):
        return None
    name = f"{structure['formula']}_Z{structure['z']}_{structure['sample_id']}.cif".replace("/", "_")
    path = Path(tempfile.mkdtemp(prefix="plaid-cif-")) / name
    path.write_text(structure["cif"])
    return str(path)


def build_app(service: GenerationService):
    """FastAPI app: the JSON API, the viewer script, and the Gradio page at ``/``."""
    import gradio as gr

    app = build_api(service)
    demo = build_demo(service)
    return gr.mount_gradio_app(app, demo, path="/", head='<script src="/plaid-viewer.js"></script>',
                               footer_links=[])
