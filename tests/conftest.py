"""Test-wide settings: offline, headless, deterministic and light on a 2-core CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NO_COLOR", "1")
os.environ.setdefault("COLUMNS", "200")

import pytest


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted OpenVINO encoders and compiled models go to a folder of this session, not
    the user's cache."""
    os.environ["B2P_CACHE_DIR"] = str(tmp_path_factory.mktemp("b2p-cache"))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state."""
    import random

    import numpy as np

    random.seed(0)
    np.random.seed(0)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------
# Shared builders. Test files never import each other: what several files need lives here.
# --------------------------------------------------------------------------------------------

NAMES3 = ["background", "dirt", "damage"]
RED = (230, 30, 30)


def _build_student(**kwargs):
    """A random-weight Student, quiet about the random backbone (tests only)."""
    import warnings

    from boxes2pixels.student import Student
    from boxes2pixels.student.model import RandomBackboneWarning

    if "backbone_weights" not in kwargs:
        kwargs.setdefault("backbone_init", "random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomBackboneWarning)
        return Student(**kwargs)


@pytest.fixture(scope="session")
def make_student():
    """Factory: ``make_student(**kwargs)`` builds a random-weight ``Student``."""
    return _build_student


@pytest.fixture(scope="module")
def tiny_student():
    """A 3-class random-weight student at 56 px (full fine-tuning mode), in eval mode."""
    import torch

    torch.manual_seed(0)
    return _build_student(num_classes=3, class_names=NAMES3, backbone_mode="full", imgsz=56).eval()


def _square_dataset(root, n_train: int = 4, n_val: int = 2, size: int = 56):
    """Images with a red square (mask value 1 or 2) on a noisy grey background + masks."""
    import numpy as np
    from PIL import Image

    from boxes2pixels.data.labelmaps import write_mask

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = (rng.random((size, size, 3)) * 60 + 90).astype(np.uint8)
            mask = np.zeros((size, size), np.uint8)
            y, x = rng.integers(4, size - 20, 2)
            img[y : y + 16, x : x + 16] = RED
            mask[y : y + 16, x : x + 16] = 1 + i % 2
            Image.fromarray(img).save(root / "images" / split / f"im{i}.png")
            write_mask(root / "masks" / split / f"im{i}.png", mask)
    (root / "data.yaml").write_text(
        "path: .\ntrain: images/train\nval: images/val\nnames: [dirt, damage]\n"
    )
    return root


@pytest.fixture(scope="session")
def make_square_dataset():
    """Factory: ``make_square_dataset(root, n_train=4, n_val=2, size=56)`` -> ``root``."""
    return _square_dataset


@pytest.fixture(scope="session")
def sam_checkpoint(tmp_path_factory):
    """Factory: ``sam_checkpoint("vit_b" | "vit_t")`` -> a random-weight checkpoint file in the
    official layout (``sam_vit_b_*.pth`` state dict, ``mobile_sam.pt``), built once per session."""
    import warnings

    import torch

    folder = tmp_path_factory.getbasetemp() / "random-sam-checkpoints"
    folder.mkdir(exist_ok=True)

    def build(model_type: str):
        name = "mobile_sam.pt" if model_type == "vit_t" else f"sam_{model_type}_random.pth"
        path = folder / name
        if not path.exists():
            if model_type == "vit_t":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from mobile_sam import sam_model_registry
            else:
                from segment_anything import sam_model_registry
            torch.manual_seed(0)
            torch.save(sam_model_registry[model_type]().state_dict(), path)
        return path

    return build


@pytest.fixture(scope="session")
def teacher_checkpoint(sam_checkpoint, tmp_path_factory):
    """Factory: ``teacher_checkpoint(teacher, model_type)`` -> a random-weight checkpoint of a
    SAM-family teacher, built with the package's own builder and saved in the official layout
    and file name (``sam_hq_vit_tiny.pth`` state dict, ``sam2.1_hiera_tiny.pt`` = {"model":
    state dict}); ``sam`` and ``mobile-sam`` come from ``sam_checkpoint``. Built once a session."""
    import warnings

    import torch

    folder = tmp_path_factory.getbasetemp() / "random-teacher-checkpoints"
    folder.mkdir(exist_ok=True)

    def build(teacher: str, model_type: str):
        if teacher in ("sam", "mobile-sam"):
            return sam_checkpoint(model_type)
        if teacher == "sam-hq":
            path = folder / f"sam_hq_{model_type}.pth"
        else:
            path = folder / f"sam2.1_hiera_{model_type}.pt"
        if not path.exists():
            torch.manual_seed(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if teacher == "sam-hq":
                    from segment_anything_hq import sam_model_registry

                    torch.save(sam_model_registry[model_type]().state_dict(), path)
                else:
                    from sam2.build_sam import build_sam2

                    suffix = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
                    config = f"configs/sam2.1/sam2.1_hiera_{suffix[model_type]}.yaml"
                    model = build_sam2(config, None, device="cpu")
                    torch.save({"model": model.state_dict()}, path)
        return path

    return build


# --------------------------------------------------------------------------------------------
# tests/gpu (CUDA only, `.ci/gpu`) and tests/extra_openvino (the optional OpenVINO extra,
# `.ci/openvino`) are collected only when named on the command line. OpenVINO runs in a
# process of its own: after its MobileSAM test, the exit of a child process handled by a
# SIGCHLD handler in Python (PyTorch's loader installs one) crashed the interpreter.
# --------------------------------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))
_OPT_IN = tuple(os.path.join(_HERE, name) for name in ("gpu", "extra_openvino"))


def pytest_ignore_collect(collection_path, config):
    """Leave out tests/gpu and tests/extra_openvino unless a command-line path points into them."""
    folder = str(collection_path)
    if folder not in _OPT_IN:
        return None
    asked = [os.path.abspath(str(arg).split("::")[0]) for arg in config.args]
    if any(a == folder or a.startswith(folder + os.sep) for a in asked):
        return None
    return True


@pytest.fixture(scope="session")
def baseline_dir(tmp_path_factory):
    """A saved random-encoder U-Net baseline in the run layout `b2p benchmark` writes."""
    import torch

    from boxes2pixels.baselines import BaselineModel

    torch.manual_seed(0)
    model = BaselineModel(
        "unet", num_classes=3, class_names=NAMES3, encoder_init="random", imgsz=64
    )
    folder = tmp_path_factory.mktemp("unet")
    model.save_pretrained(folder / "best")
    return folder


@pytest.fixture(scope="session")
def onnx_file(tmp_path_factory):
    """A tiny random student (timm's ``test_vit``) exported to a dynamic-shape ``.onnx`` file."""
    import torch

    from boxes2pixels.export import export_onnx

    torch.manual_seed(0)
    model = _build_student(
        class_names=NAMES3, backbone="test_vit", backbone_mode="full", decoder_channels=32, imgsz=64
    ).eval()
    path = tmp_path_factory.mktemp("onnx") / "student.onnx"
    export_onnx(model, path, imgsz=64, dynamic=True)
    return path


# --------------------------------------------------------------------------------------------
# Fault tests (issue 19): run the CLI as a user would and prove the user's files are unchanged.
# --------------------------------------------------------------------------------------------
def _tree_digest(folder):
    """sha256 of every file below ``folder`` (symlinks as their target text), by relative path."""
    import hashlib
    from pathlib import Path

    folder = Path(folder)
    out = {}
    for p in sorted(folder.rglob("*")):
        key = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[key] = "link:" + os.readlink(p)
        elif p.is_file():
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _invoke_cli(*args):
    """``b2p ARGS`` in this process -> (exit code, output as one line of words). A Python
    exception escaping the CLI is re-raised: a traceback is what fault tests rule out."""
    from typer.testing import CliRunner

    from boxes2pixels.cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="session")
def tree_digest():
    """Function: ``tree_digest(folder)`` -> {relative path: sha256} of every file below it."""
    return _tree_digest


@pytest.fixture(scope="session")
def invoke_cli():
    """Function: ``invoke_cli(*args)`` -> (exit code, output as one line); raises on a traceback."""
    return _invoke_cli


def _labelled_dataset(root, *, train: int, val: int = 0, splits: str | None = None):
    """``root/ds`` (a generated dataset of 96×64 photos, ground truth in ``ds/gt_masks``) and
    the box teacher's ``root/masks`` (only ``splits`` when given); returns ``root``."""
    from boxes2pixels.data.synth import generate_dataset

    generate_dataset(root / "ds", train=train, val=val, test=0, size=(96, 64), seed=0)
    args = ["label", root / "ds" / "data.yaml", "--teacher", "box", "--out", root / "masks"]
    code, text = _invoke_cli(*args, *(["--splits", splits] if splits else []), "-q")
    assert code == 0, text
    return root


def _fresh_copy(base, folder):
    """Copies of ``base/ds`` and ``base/masks`` in ``folder`` (links kept); returns ``folder``."""
    import shutil

    for name in ("ds", "masks"):
        shutil.copytree(base / name, folder / name, symlinks=True)
    return folder


@pytest.fixture(scope="session")
def labelled_dataset():
    """Factory: ``labelled_dataset(root, train=N, val=0, splits=None)`` -> ``root`` with
    ``ds/`` and the box teacher's ``masks/``."""
    return _labelled_dataset


@pytest.fixture(scope="session")
def fresh_copy():
    """Function: ``fresh_copy(base, folder)`` copies ``base/ds`` and ``base/masks`` there."""
    return _fresh_copy


@pytest.fixture(scope="session")
def file_size_limit():
    """Context manager: ``with file_size_limit(n):`` writes past ``n`` bytes fail with EFBIG,
    as under ``ulimit -f`` (SIGXFSZ ignored, as Python does)."""
    import resource
    import signal
    from contextlib import contextmanager

    @contextmanager
    def limit(size: int):
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, handler)

    return limit
