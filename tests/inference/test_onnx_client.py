"""The exported file alone: examples/onnx_client.py (numpy, cv2, Pillow, onnxruntime, no
boxes2pixels) writes the label maps of `b2p predict MODEL.onnx --runtime onnx`, pixel for pixel,
and a plain `b2p export` predicts any photo shape like the PyTorch student."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.geometry import letterbox, normalize, unletterbox_logits
from boxes2pixels.inference.onnx_model import OnnxStudent
from boxes2pixels.io import write_rgb

CLIENT = Path(__file__).resolve().parents[2] / "examples" / "onnx_client.py"
# landscape 640×360, portrait, one smaller than the model's 64 px (enlarged, logits shrunk),
# one whose content needs no resize, and a sliver (content rounded up to 1 px)
SHAPES = {"land": (360, 640), "portrait": (100, 45), "small": (30, 41), "exact": (64, 48)}
SHAPES["sliver"] = (3, 200)
MARGIN = 1e-5
"""Top-2 logit margin below which two float32 runtimes may legitimately pick different
classes: onnxruntime's and PyTorch's logits of this model differ by about 6e-8 (different
kernels, summation orders). Only pixels that close to a tie may differ from PyTorch; the
photos here have none, so the maps are also asserted identical."""


def photo(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth random colours plus noise: structure at every scale, like a photo."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    base = cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_LINEAR).astype(np.int16)
    noise = rng.integers(-40, 41, (*shape, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def student(make_student):
    torch.manual_seed(0)
    model = make_student(
        num_classes=3,
        class_names=["background", "dirt", "damage"],
        backbone="test_vit",
        backbone_mode="full",
        decoder_channels=32,
        imgsz=64,
    )
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    # centre each class's logits on a photo, so that every class wins somewhere
    padded, _ = letterbox(photo(SHAPES["land"], 0), 64, multiple=16)
    with torch.inference_mode():
        logits = model(normalize(padded, model.mean, model.std)[None])["fine"]
    with torch.no_grad():
        model.decoder.fine_head.classifier.bias -= logits.mean(dim=(0, 2, 3))
    return model


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory, invoke_cli) -> dict[str, Path]:
    """The student saved, and exported by a plain `b2p export` and by `b2p export --static`."""
    root = tmp_path_factory.mktemp("client")
    student.save_pretrained(root / "model")
    files = {}
    for kind, flags in (("dynamic", ()), ("static", ("--static",))):
        files[kind] = root / f"{kind}.onnx"
        code, out = invoke_cli("export", root / "model", "--out", files[kind], *flags)
        assert code == 0, out
    return files


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for seed, (name, shape) in enumerate(SHAPES.items()):
        write_rgb(folder / f"{name}.png", photo(shape, seed))
    return folder


def near_tie(logits: torch.Tensor) -> np.ndarray:
    """Pixels whose two best classes are within MARGIN (N=1 logits at image size)."""
    top2 = logits[0].topk(2, dim=0).values
    return (top2[0] - top2[1]).numpy() < MARGIN


def assert_same_labels(got: np.ndarray, expected: np.ndarray, logits: torch.Tensor) -> None:
    """Equal labels, except where PyTorch's logits are a near-tie (see MARGIN)."""
    assert got.shape == expected.shape
    differ = got != expected
    assert not (differ & ~near_tie(logits)).any(), f"{differ.sum()} pixels differ"


def test_the_client_imports_nothing_of_boxes2pixels() -> None:
    tree = ast.parse(CLIENT.read_text(encoding="utf-8"))
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names}  # fmt: skip
    modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module}  # fmt: skip
    third_party = modules - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"cv2", "numpy", "onnxruntime", "PIL"}


# the static file is asked for another size: it letterboxes to its own, as its metadata says
@pytest.mark.parametrize(("kind", "flags"), [("dynamic", ()), ("static", ("--imgsz", "128"))])
def test_client_reproduces_b2p_predict_pixel_for_pixel(
    kind, flags, exported, photos, tmp_path, invoke_cli
) -> None:
    model = exported[kind]
    code, out = invoke_cli(
        "predict", model, photos, "--out", tmp_path / "b2p", "--runtime", "onnx",
        "--precision", "fp32", "--device", "cpu", *flags,
    )  # fmt: skip
    assert code == 0, out
    client = subprocess.run(
        [sys.executable, str(CLIENT), str(model), str(photos), "--out", str(tmp_path / "client")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert client.returncode == 0, client.stderr
    for name, shape in SHAPES.items():
        b2p = read_mask(tmp_path / "b2p" / f"{name}.png")
        ours = read_mask(tmp_path / "client" / f"{name}.png")
        assert b2p.shape == ours.shape == shape
        assert np.array_equal(b2p, ours), f"{kind} {name}: {(b2p != ours).sum()} pixels differ"
        assert len(np.unique(b2p)) > 1  # a constant map would prove nothing


def test_plain_export_predicts_640x360_like_the_pytorch_student(student, exported) -> None:
    image = photo(SHAPES["land"], 0)
    runner = OnnxStudent(exported["dynamic"])
    assert runner.dynamic and runner.imgsz == 64
    (expected,) = student.predict([image], precision="fp32")
    (got,) = runner.predict([image])
    padded, content = letterbox(image, 64, multiple=16)
    with torch.inference_mode():
        logits = student(normalize(padded, student.mean, student.std)[None])["fine"]
    assert_same_labels(got, expected, unletterbox_logits(logits, content, image.shape[:2]))
    assert np.array_equal(got, expected)  # no near-tie in this photo: identical


def test_static_export_letterboxes_every_image_to_its_own_size(student, exported) -> None:
    runner = OnnxStudent(exported["static"])
    assert not runner.dynamic and runner.fixed_hw == (64, 64) and runner.batch == 1
    assert runner.letterbox_side(1000) == 64  # a conflicting request is ignored
    images = [photo(shape, seed) for seed, shape in enumerate(SHAPES.values())]
    got = runner.predict(images, imgsz=1000, batch_size=3)
    for image, labels in zip(images, got, strict=True):
        padded, content = letterbox(image, 64, multiple=16, square=True)
        with torch.inference_mode():
            logits = student(normalize(padded, student.mean, student.std)[None])["fine"]
        logits = unletterbox_logits(logits, content, image.shape[:2])
        assert_same_labels(labels, logits.argmax(1)[0].numpy().astype(np.uint8), logits)


def test_static_export_names_the_file_for_inputs_it_cannot_take(exported) -> None:
    from boxes2pixels.errors import Boxes2PixelsError

    runner = OnnxStudent(exported["static"])
    with pytest.raises(Boxes2PixelsError, match=r"static.onnx: a static export takes inputs up"):
        runner(torch.zeros(1, 3, 80, 64))
    out = runner(torch.zeros(2, 3, 32, 48))["fine"]  # smaller: padded, cropped back
    assert out.shape == (2, 3, 32, 48)


def test_metadata_describes_the_whole_pipeline(exported) -> None:
    dynamic, static = (OnnxStudent(exported[k]).config for k in ("dynamic", "static"))
    assert dynamic["format"] == 2 and dynamic["dynamic"] and not static["dynamic"]
    pre, post = dynamic["preprocessing"], dynamic["postprocessing"]
    assert pre["resize"]["long_side"] == 64 and pre["channel_order"] == "RGB"
    assert pre["pad"]["to_multiple"] == 16 and static["preprocessing"]["pad"]["to_size"] == [64, 64]
    assert pre["mean"] == dynamic["mean"] and pre["std"] == dynamic["std"]
    assert "INTER_AREA" in pre["resize"]["interpolation"]
    assert "half-pixel" in post["upsample"]["method"] and "argmax" in post["label"]
    assert static["input"]["shape"] == [1, 3, 64, 64]
