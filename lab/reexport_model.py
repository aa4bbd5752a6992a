"""Re-export a trained edgewatch model with the current trainer's graph layout, same weights and metadata.

    .venv/bin/python lab/reexport_model.py models/demo.onnx [OUT]

The trainer's weights are read back from the file (``trainer.export.scoring_graph_from_onnx``) and
exported again through ``export_model``, whose parity check compares the new graph with the trainer's
module; threshold, normalisation, channels and training notes are kept (model_id is a content hash,
so it changes with the graph). Used to give ``models/demo.onnx`` the fast layout without retraining.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from trainer.export import export_model, read_metadata, scoring_graph_from_onnx


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) == 2 else src
    meta = read_metadata(src)
    graph = scoring_graph_from_onnx(src)
    rng = np.random.default_rng(0)
    mean, std = np.array(meta.normalisation.mean), np.array(meta.normalisation.std)
    holdout = (mean + std * rng.standard_normal((256, meta.window, meta.n_channels))).astype(np.float32)
    tmp = out.with_name(out.stem + ".reexport.onnx")
    rep = export_model(graph.ae, replace(meta, model_id="", versions={}), tmp, holdout)
    tmp.replace(out)
    print(f"{out}: model_id {rep.meta.model_id}, parity max diff {rep.parity_max_diff}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
