"""The whole pipeline from Python: generate data, label, train, predict, evaluate.

Offline-friendly (random backbone, tiny sizes, a minute or two on a CPU). With internet or a
Hugging Face cache, drop ``backbone_init="random"`` to start from pretrained DINOv2 weights.

    python examples/python_api.py /tmp/b2p-example
"""

from __future__ import annotations

import sys
from pathlib import Path

from boxes2pixels import (
    TrainConfig,
    evaluate,
    generate_dataset,
    label_dataset,
    load_teacher,
    predict_files,
    train,
)


def main(workdir: Path) -> None:
    data_yaml = generate_dataset(workdir / "data", train=24, val=8, test=8, size=(224, 168))
    label_dataset(data_yaml, load_teacher("grabcut"), workdir / "masks", splits=("train", "val"))
    config = TrainConfig(
        data=data_yaml,
        masks=workdir / "masks",
        out=workdir / "run",
        epochs=3,
        imgsz=112,
        batch=4,
        backbone_init="random",  # explicit: no pretrained weights offline
        backbone_mode="full",  # a random backbone must be trained, not frozen
    )
    result = train(config)
    predict_files(result.best_dir, workdir / "data/images/test", workdir / "pred", overlay=True)
    scores = evaluate(pred=workdir / "pred", masks=workdir / "data/gt_masks", split="test")
    print({k: v for k, v in scores.to_dict().items() if k.startswith(("miou", "anomaly"))})


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "b2p-example"))
