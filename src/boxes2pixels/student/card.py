"""The Hugging Face model card of a saved student (``README.md`` next to the weights)."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCardData


def model_card(model: Any, dataset: str | None = None, notes: str | None = None) -> str:
    """Markdown model card: architecture, initialisation, classes, usage and metrics."""
    info = model.describe()
    data = ModelCardData(
        library_name="boxes2pixels",
        license="mit",
        pipeline_tag="image-segmentation",
        tags=["boxes2pixels", "image-segmentation", "weak-supervision", "defect-detection"],
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
