"""Do the annotation tools read our exports, and exactly? (issue 21)

Part 1 (this environment): generated label maps (``boxes2pixels.data.synth``, exact ground
truth, 320×192) plus a map of hard shapes (lone pixels, diagonal 1-px cracks, rings, random
speckle) are written as COCO polygons, and every component is decoded back with pycocotools:
the round-trip IoU per component size, for the pixel-edge polygons written now and for the
outline polygons of earlier versions (``instance_outlines``, the outline through boundary
pixel centres); then each polygon file is scored against itself (COCOeval ``segm`` AP).

Part 2 (the tools' own libraries, in an environment of their own): ``b2p convert --to cvat``
is imported with Datumaro's COCO importer (``Dataset.import_from(..., "coco_instances")``),
``--to label-studio`` is checked with label-studio-sdk (``LabelInterface.validate_prediction``,
``converter.brush.decode_rle``, ``mask2rle``) and our polygon COCO file goes through its
``convert_coco_to_ls``; each decoded mask is compared with the label map.

    python -m venv /tmp/venv-interop
    /tmp/venv-interop/bin/pip install label-studio-sdk datumaro pycocotools opencv-python-headless
    python benchmarks/interop_roundtrip.py --tools-python /tmp/venv-interop/bin/python

(about a minute on 2 cores). Without ``--tools-python`` part 2 runs here if the tools import.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

NAMES = ["dirt", "damage"]
BINS = [(1, 1), (2, 9), (10, 99), (100, 999), (1000, 10**9)]


def _hard_map(seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    m = np.zeros((192, 320), np.uint8)
    for _ in range(6):
        m[rng.integers(0, 96), rng.integers(0, 160)] = 1  # lone pixels
    for i in range(3):  # diagonal and straight hairlines
        cv2.line(m, (5 + 40 * i, 5), (35 + 40 * i, 60), 2, 1)
    cv2.line(m, (10, 90), (150, 90), 2, 1)
    cv2.line(m, (100, 20), (150, 70), 1, 1)  # 45°: one polygon per pixel, so RLE
    cv2.circle(m, (130, 40), 12, 1, 2)  # a ring
    speckle = rng.random((20, 30)) < 0.4
    m[65:85, 60:90][speckle] = 1
    return m


def _decode(segmentation, h: int, w: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w))
    else:
        rle = {**segmentation, "counts": segmentation["counts"].encode()}
    return mask_utils.decode(rle).astype(bool)


def _ap(coco: dict, folder: Path) -> float:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path = folder / "self.json"
    path.write_text(json.dumps(coco))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        dets = gt.loadRes([{**a, "score": 1.0} for a in coco["annotations"]])
        ev = COCOeval(gt, dets, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def part_one(work: Path, n_images: int) -> None:
    from boxes2pixels.convert import instance_outlines, masks_to_coco, polygon_area
    from boxes2pixels.convert_folder import convert_masks
    from boxes2pixels.data.labelmaps import label_regions, read_mask, write_mask
    from boxes2pixels.data.synth import generate_dataset

    ds = work / "ds"
    generate_dataset(ds, train=n_images, val=0, test=0, size=(320, 192), seed=1)
    write_mask(ds / "gt_masks" / "train" / "train_00000.png", _hard_map())  # replace one
    names = sorted(p.name for p in (ds / "gt_masks" / "train").glob("*.png"))
    maps = [read_mask(ds / "gt_masks" / "train" / n) for n in names]
    new = masks_to_coco(names, maps, NAMES, encoding="polygon")
    old = masks_to_coco(names, maps, NAMES, encoding="rle")
    for ann, region in zip(
        old["annotations"], [r for m in maps for r in label_regions(m)], strict=True
    ):
        ann["segmentation"] = [
            o.reshape(-1).astype(float).tolist() for o in instance_outlines(region)
        ]
    rows = {b: {"n": 0, "poly": 0, "new": [], "old": [], "zero_old": 0} for b in BINS}
    truths = [r.mask for m in maps for r in label_regions(m)]
    for a_new, a_old, truth in zip(new["annotations"], old["annotations"], truths, strict=True):
        h, w = truth.shape
        b = next(b for b in BINS if b[0] <= a_new["area"] <= b[1])
        row = rows[b]
        row["n"] += 1
        row["poly"] += isinstance(a_new["segmentation"], list)
        for key, ann in (("new", a_new), ("old", a_old)):
            d = _decode(ann["segmentation"], h, w)
            row[key].append((d & truth).sum() / (d | truth).sum())
        zero = [polygon_area(np.reshape(p, (-1, 2))) == 0 for p in a_old["segmentation"]]
        row["zero_old"] += all(zero)
    print(f"## COCO polygons: {len(maps)} label maps, {len(truths)} components\n")
    print(
        "| component px | n | written as polygons | IoU now (min / mean) "
        "| earlier outline polygons: IoU min / mean, zero-area |"
    )
    print("|---|---|---|---|---|")
    for (lo, hi), row in rows.items():
        if not row["n"]:
            continue
        size = f"{lo}" if lo == hi else (f"{lo}–{hi}" if hi < 10**9 else f"≥ {lo}")
        now = f"{min(row['new']):.3f} / {np.mean(row['new']):.3f}"
        before = f"{min(row['old']):.3f} / {np.mean(row['old']):.3f}, {row['zero_old']}"
        print(f"| {size} | {row['n']} | {row['poly']} | {now} | {before} |")
    ap_new, ap_old = _ap(new, work), _ap(old, work)
    print(
        f"\nAP of the file scored against itself: now {ap_new:.3f}, earlier outlines {ap_old:.3f}"
    )
    for to in ("cvat", "label-studio"):
        convert_masks(ds / "gt_masks", ds / "data.yaml", work / to, to, copy_images=True)
    (work / "coco_polygons.json").write_text(json.dumps(new))
    np.savez_compressed(work / "truth.npz", **{n: m for n, m in zip(names, maps, strict=True)})


def part_two(work: Path) -> None:
    import contextlib
    import io
    import logging

    logging.disable(logging.WARNING)
    truth = dict(np.load(work / "truth.npz"))
    print("\n## Datumaro (CVAT's importer)\n")
    import datumaro
    from datumaro.components.annotation import Mask, Polygon
    from datumaro.components.dataset import Dataset
    from pycocotools import mask as mask_utils

    dataset = Dataset.import_from(str(work / "cvat"), "coco_instances")
    exact = found = items = 0
    for item in dataset:
        items += 1
        found += item.media.has_data
        h, w = item.media.size
        label_map = np.zeros((h, w), np.uint8)
        for ann in item.annotations:
            if isinstance(ann, Polygon):
                m = mask_utils.decode(
                    mask_utils.merge(mask_utils.frPyObjects([ann.points], h, w))
                ).astype(bool)
            elif isinstance(ann, Mask):
                m = ann.image.astype(bool)
            else:
                continue
            label_map[m] = ann.label + 1
        exact += np.array_equal(label_map, truth[Path(item.id).name + ".png"])
    print(
        f"datumaro {datumaro.__version__}: {items} items imported, "
        f"images found {found}/{items}, masks exact {exact}/{items}"
    )

    print("\n## Label Studio\n")
    import label_studio_sdk
    from label_studio_sdk.converter.brush import decode_rle, mask2rle
    from label_studio_sdk.label_interface import LabelInterface

    tasks = json.loads((work / "label-studio" / "tasks.json").read_text())
    iface = LabelInterface((work / "label-studio" / "label_config.xml").read_text())
    errors = exact = same_bytes = regions = 0
    for task in tasks:
        pred = task["predictions"][0]
        errors += len(iface.validate_prediction(pred, return_errors=True) or [])
        name = Path(task["data"]["b2p_name"]).with_suffix(".png").name
        h, w = truth[name].shape
        label_map = np.zeros((h, w), np.uint8)
        for region in pred["result"]:
            regions += 1
            alpha = decode_rle(region["value"]["rle"]).reshape(h, w, 4)[:, :, 3]
            value = NAMES.index(region["value"]["brushlabels"][0]) + 1
            label_map[alpha > 0] = value
            same_bytes += (
                mask2rle(((truth[name] == value) * 255).astype(np.uint8)) == region["value"]["rle"]
            )
        exact += np.array_equal(label_map, truth[name])
    print(
        f"label-studio-sdk {getattr(label_studio_sdk, '__version__', '')}: {len(tasks)} tasks, "
        f"validate_prediction errors {errors}, decode_rle exact {exact}/{len(tasks)}, "
        f"RLE byte-identical to mask2rle {same_bytes}/{regions}"
    )
    from label_studio_sdk.converter.imports.coco import convert_coco_to_ls

    coco = json.loads((work / "coco_polygons.json").read_text())
    rle = [a for a in coco["annotations"] if isinstance(a["segmentation"], dict)]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            convert_coco_to_ls(str(work / "coco_polygons.json"), str(work / "ls_from_coco.json"))
        print("convert_coco_to_ls on our polygon COCO file: no error")
    except Exception as exc:
        print(
            f"convert_coco_to_ls on our polygon COCO file: fails ({type(exc).__name__}) on its "
            f"{len(rle)} RLE annotation(s) (components needing over 32 polygons)"
        )
    coco["annotations"] = [a for a in coco["annotations"] if isinstance(a["segmentation"], list)]
    (work / "coco_only_polygons.json").write_text(json.dumps(coco))
    out = work / "ls_from_coco.json"
    with contextlib.redirect_stdout(io.StringIO()):
        convert_coco_to_ls(str(work / "coco_only_polygons.json"), str(out))
    converted = json.loads(out.read_text())
    polys = sum(len(t.get("annotations", [{}])[0].get("result", [])) for t in converted)
    print(
        f"convert_coco_to_ls without them: {len(converted)} tasks, {polys} polygon regions "
        f"from {len(coco['annotations'])} annotations, no error"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--tools-python", help="a Python with label-studio-sdk and datumaro")
    parser.add_argument("--check", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check:
        part_two(args.check)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        part_one(work, args.images)
        if args.tools_python:
            src = str(Path(__file__).resolve().parents[1] / "src")
            env = {**os.environ, "PYTHONPATH": src}
            subprocess.run([args.tools_python, __file__, "--check", str(work)], check=True, env=env)
        else:
            try:
                part_two(work)
            except ImportError as exc:
                print(f"\npart 2 skipped ({exc}); pass --tools-python (see the docstring)")


if __name__ == "__main__":
    main()
