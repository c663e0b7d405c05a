"""Notices: things a step did that its caller must hear about ("nothing to train", "resumed at epoch 3").

A notice is one printed line with a fixed prefix, so it shows in a notebook's output and the pipeline
runner shows it on the terminal as it is printed (NotebookLines), or after the notebook ran (notices_in: papermill
keeps outputs in the executed copy).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, TextIO

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


class NotebookLines:
    """A notebook's stdout or stderr as papermill hands it over while the notebook runs (its stdout_file /
    stderr_file), shown on `out` a whole line at a time: a text progress bar's redraws (carriage returns) collapse
    to its last state, one line per bar, and a notice becomes "[pipeline] <notebook>: <notice>"."""

    def __init__(self, notebook: str, out: TextIO) -> None:
        self.notebook, self.out, self.pending = notebook, out, ""

    def write(self, text: str) -> None:
        """Take the next piece of output; show each line it completes."""
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            self._show(line)

    def flush(self) -> None:
        """papermill flushes after every write; an unfinished line waits for its end (or for close)."""

    def close(self) -> None:
        """Show what is left of an unfinished line (the notebook has ended)."""
        self._show(self.pending)
        self.pending = ""

    def _show(self, line: str) -> None:
        from tqdm import tqdm

        drawn = [part.rstrip() for part in line.split("\r") if part.strip()]
        if not drawn:
            return
        last = drawn[-1]
        shown = f"[pipeline] {self.notebook}: {last[len(PREFIX):]}" if last.startswith(PREFIX) else f"  {last}"
        tqdm.write(shown, file=self.out)  # above the pipeline's own progress bar, not through it
