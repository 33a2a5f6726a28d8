"""The Hugging Face model card of a saved student (``README.md`` next to the weights)."""

from __future__ import annotations

from typing import Any

from huggingface_hub import EvalResult, ModelCardData

MODEL_NAME = "boxes2pixels-student"


METRIC_IDS = {"miou": "mean_iou"}
"""Hub metric ids (the ``evaluate`` library's names) of metrics whose key differs."""


def base_model_id(model: Any) -> str | None:
    """The Hub id of the backbone's pretrained weights (timm's ``hf_hub_id``), only when the
    backbone was initialised from them (``backbone_init`` ``pretrained``): None for a random
    backbone, a local weights file (nothing proves which model it holds) or a backbone timm
    knows no Hub weights for."""
    if model.random_backbone or getattr(model, "backbone_init", "pretrained") != "pretrained":
        return None
    hub_id = model.backbone.pretrained_cfg.get("hf_hub_id")
    return str(hub_id).split("@", 1)[0] if hub_id else None


def eval_results(metrics: dict[str, Any] | None, dataset: str | None) -> list[EvalResult] | None:
    """The model-index entries of the scalar metrics (``val_`` metrics of training are
    scores on the validation split's pseudo-masks), or None when not evaluated. Metric types
    are Hub ids (``miou`` is ``mean_iou``); the name keeps boxes2pixels' key."""
    if not metrics:
        return None
    results = []
    for key, value in metrics.items():
        if not isinstance(value, float) or key == "epoch":
            continue
        split = "validation" if key.startswith("val_") else None
        name = key.removeprefix("val_")
        results.append(
            EvalResult(
                task_type="image-segmentation",
                dataset_type=dataset or "custom",
                dataset_name=dataset or "custom defect images",
                dataset_split=split,
                metric_type=METRIC_IDS.get(name, name),
                metric_name=name,
                metric_value=round(value, 6),
            )
        )
    return results or None


def model_card(model: Any, dataset: str | None = None, notes: str | None = None) -> str:
    """Markdown model card: architecture, initialisation, classes, usage and metrics.

    The metadata carries ``base_model`` (the backbone's Hub id, for Hub-pretrained weights
    only), ``datasets`` (``dataset``,
    when given) and a ``model-index`` with the evaluation results (when the model has metrics).
    """
    info = model.describe()
    results = eval_results(model.metrics, dataset)
    data = ModelCardData(
        library_name="boxes2pixels",
        license="mit",
        pipeline_tag="image-segmentation",
        tags=["boxes2pixels", "image-segmentation", "weak-supervision", "defect-detection"],
        base_model=base_model_id(model),
        datasets=[str(dataset)] if dataset else None,
        model_name=MODEL_NAME if results else None,
        eval_results=results,
    )
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        "# Boxes2Pixels student",
        "",
        "A compact defect segmentation model distilled from box-prompted pseudo-masks "
        "(Boxes2Pixels): a timm ViT backbone with a hierarchical decoder, a detail branch "
        "and binary + fine heads.",
        "",
    ]
    if model.random_backbone:
        lines += [
            "> **Random backbone.** This model's backbone was initialised with random "
            "weights, not pretrained DINOv2 features; its predictions are not meaningful "
            "for real use.",
            "",
        ]
    lines += ["## Model", "", "| field | value |", "|---|---|"]
    for key in (
        "backbone",
        "backbone_init",
        "backbone_mode",
        "backbone_blocks",
        "feature_indices",
        "detail_branch",
        "binary_head",
        "imgsz",
        "parameters",
        "trainable_parameters",
    ):
        lines.append(f"| {key} | {info[key]} |")
    lines += ["", "## Classes", "", "| value | class |", "|---|---|"]
    lines += [f"| {i} | {name} |" for i, name in enumerate(model.class_names)]
    if dataset:
        lines += ["", "## Data", "", str(dataset)]
    lines += ["", "## Metrics", ""]
    if model.metrics:
        lines += _metrics_markdown(model.metrics)
    else:
        lines.append("Not evaluated yet.")
    if notes:
        lines += ["", "## Notes", "", str(notes)]
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        "from boxes2pixels.student import Student",
        "from boxes2pixels.io import read_image",
        "",
        'model = Student.from_pretrained("path/or/hub-id")',
        'label_map = model.predict(read_image("image.jpg"))[0]',
        "```",
        "",
        "Label maps: 0 background, k+1 for YOLO class k.",
        "",
    ]
    return "\n".join(lines)


def _metrics_markdown(metrics: dict[str, Any]) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    per_class: dict[str, Any] | None = None
    for key, value in metrics.items():
        if key == "per_class" and isinstance(value, dict):
            per_class = value
        elif isinstance(value, float):
            lines.append(f"| {key} | {value:.4f} |")
        elif isinstance(value, (int, str, bool)):
            lines.append(f"| {key} | {value} |")
    if per_class:
        fields = sorted({f for v in per_class.values() if isinstance(v, dict) for f in v})
        lines += ["", "| class | " + " | ".join(fields) + " |", "|---" * (len(fields) + 1) + "|"]
        for name, values in per_class.items():
            cells = [
                f"{values[f]:.4f}" if isinstance(values.get(f), float) else str(values.get(f, ""))
                for f in fields
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
