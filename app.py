"""Hugging Face Space entry point: ``python app.py`` serves the model in $PLAID_MODEL (default ./model) with the
page and the JSON API of ``plaid serve``. Settings: PLAID_RELAXER (chgnet | m3gnet | none), PLAID_HULL, PORT."""

import os

from plaid.app.cli import build_service
from plaid.app.web import build_app

service = build_service(
    os.environ.get("PLAID_MODEL", "model"),
    relaxer=os.environ.get("PLAID_RELAXER", "chgnet"),
    hull=os.environ.get("PLAID_HULL") or None,
)
app = build_app(service)

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "7860")))
