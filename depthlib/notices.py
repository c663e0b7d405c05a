"""Notices: things a step did that its caller must hear about ("nothing to train", "resumed at epoch 3").

A notice is one printed line with a fixed prefix, so it shows in a notebook's output and the pipeline
runner can repeat it on the terminal after the notebook ran (papermill keeps outputs in the executed copy).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

PREFIX = "[depthlib notice] "
log = logging.getLogger("depthlib")


def notice(msg: str) -> None:
    """Print `msg` as a notice line on stdout (and log it at INFO)."""
    log.info(msg)
    print(PREFIX + msg, flush=True)


def notices_in(notebook: Mapping[str, Any]) -> list[str]:
    """The notices printed by the cells of an executed notebook (nbformat JSON), in order, prefix removed."""
    out = []
    for cell in notebook.get("cells", []):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                text = o.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                out += [ln[len(PREFIX):] for ln in text.splitlines() if ln.startswith(PREFIX)]
    return out
