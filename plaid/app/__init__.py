"""``plaid serve``: a Gradio page and a JSON API for generating crystals with a plaid model.

- ``service``: request validation (``parse_request``, ``BadRequest``), the Z scan and the three decoding modes
  (``GenerationService``), queueing and time limits; no web code.
- ``viewer``: structure data for the bundled browser-side viewer (``static/viewer.js``).
- ``web``: the FastAPI app (``POST /api/generate``) with the Gradio page mounted at ``/`` (``build_app``).
"""
