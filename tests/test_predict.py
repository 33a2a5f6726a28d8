"""`predict_files`, tiled inference, region reports and `b2p predict`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from boxes2pixels.cli.main import app
from boxes2pixels.data.labelmaps import read_mask
from boxes2pixels.errors import Boxes2PixelsError, CheckpointError
from boxes2pixels.inference import load_student, plan_inference, segment
from boxes2pixels.inference.batched import winning_class
from boxes2pixels.inference.openvino_cache import openvino_available
from boxes2pixels.inference.tiled import ramp_weights, tile_starts
from boxes2pixels.io import read_image, write_rgb
from boxes2pixels.predict import SUMMARY_NAME, describe_regions, predict_files

NAMES = ["background", "dirt", "damage"]


@pytest.fixture(scope="module")
def run_dir(tiny_student, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    tiny_student.save_pretrained(run / "best")
    return run


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[h // 3 : h // 2, w // 3 : w // 2] = (240, 190, 30)
    return img


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def test_load_student_from_run_folder_and_model_folder(tiny_student, run_dir: Path) -> None:
    a = load_student(run_dir, "cpu")
    b = load_student(run_dir / "best", "cpu")
    assert a.class_names == NAMES
    x = torch.zeros(1, 3, 56, 56)
    with torch.inference_mode():
        assert torch.equal(a(x)["fine"], tiny_student(x)["fine"])
        assert torch.equal(b(x)["fine"], a(x)["fine"])
    assert not a.training


def test_load_student_errors_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match="empty_run"):
        load_student(tmp_path / "empty_run", "cpu")
    with pytest.raises(CheckpointError, match="no such model folder"):
        load_student(str(tmp_path / "missing" / "deeper" / "x"), "cpu")
    # a Hub id that cannot be reached here (tests run offline) is a clear error, not a crash
    with pytest.raises(CheckpointError, match="someone/no-such-model"):
        load_student("someone/no-such-model", "cpu")


# ---------------------------------------------------------------------------------------------
# predict_files
# ---------------------------------------------------------------------------------------------


def test_masks_keep_each_image_size_and_mirror_names(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    sizes = {"wide.png": (30, 64), "square.jpg": (56, 56), "sub/tall.png": (70, 20)}
    for name, (h, w) in sizes.items():
        write_rgb(src / name, _image(h, w))
    out = tmp_path / "out"
    summary = predict_files(run_dir, src, out, device="cpu", batch_size=2, progress=False)
    assert summary.images == 3 and summary.skipped == []
    assert summary.random_backbone is True
    for name, (h, w) in sizes.items():
        mask = read_mask(out / Path(name).with_suffix(".png"))
        assert mask.shape == (h, w)
        assert mask.max() < 3
    assert sorted(p.name for p in src.rglob("*")) == ["square.jpg", "sub", "tall.png", "wide.png"]
    recorded = json.loads((out / SUMMARY_NAME).read_text())
    assert recorded["class_names"] == NAMES and recorded["random_backbone"] is True


def test_single_file_and_glob_sources(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_rgb(src / "a.png", _image(28, 42))
    write_rgb(src / "b.png", _image(20, 20))
    s1 = predict_files(run_dir, src / "a.png", tmp_path / "o1", device="cpu", progress=False)
    assert [p.name for p in s1.masks] == ["a.png"]
    s2 = predict_files(run_dir, str(src / "*.png"), tmp_path / "o2", device="cpu", progress=False)
    assert sorted(p.relative_to(tmp_path / "o2").as_posix() for p in s2.masks) == ["a.png", "b.png"]


def test_same_stem_different_suffix_do_not_overwrite(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_rgb(src / "x.png", _image(20, 28))
    write_rgb(src / "x.jpg", _image(28, 20))
    out = tmp_path / "out"
    predict_files(run_dir, src, out, device="cpu", progress=False)
    assert read_mask(out / "x.png.png").shape == (20, 28)
    assert read_mask(out / "x.jpg.png").shape == (28, 20)


def test_overlay_and_json_are_written(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_rgb(src / "p.png", _image(42, 60))
    out = tmp_path / "out"
    summary = predict_files(
        run_dir, src, out, overlay=True, json=True, device="cpu", progress=False
    )
    overlay = read_image(out / "p_overlay.jpg")
    assert overlay.shape[1] == 60 and overlay.shape[0] > 42  # legend strip below the image
    report = json.loads((out / "p.json").read_text())
    mask = read_mask(out / "p.png")
    assert report["width"] == 60 and report["height"] == 42
    assert report["class_names"] == NAMES
    for k, name in enumerate(NAMES[1:], start=1):
        assert report["defect_area"][name]["pixels"] == int((mask == k).sum())
    assert sum(r["area"] for r in report["regions"]) == int((mask > 0).sum())
    assert summary.overlays == [out / "p_overlay.jpg"]
    assert summary.reports == [out / "p.json"]


def test_corrupt_image_is_skipped_and_reported(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_rgb(src / "good.png", _image(28, 28))
    (src / "bad.jpg").write_bytes(b"this is not a jpeg")
    out = tmp_path / "out"
    summary = predict_files(run_dir, src, out, device="cpu", progress=False)
    assert [p.name for p in summary.masks] == ["good.png"]
    assert [p.name for p, _ in summary.skipped] == ["bad.jpg"]
    assert "bad.jpg" in summary.skipped[0][1]
    assert not (out / "bad.png").exists()
    recorded = json.loads((out / SUMMARY_NAME).read_text())
    assert recorded["skipped"][0]["image"].endswith("bad.jpg")


def test_cli_predict_exits_1_when_no_image_could_be_read(run_dir: Path, tmp_path: Path) -> None:
    """Every image unreadable is a failed run (a script must not take it for success), as an
    empty folder is."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"x")
    (src / "b.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    args = ["predict", str(run_dir), str(src), "--out", str(out), "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "no image could be read" in res.output and "a.jpg" in res.output
    assert not list(out.glob("*.png"))
    write_rgb(src / "good.png", _image(28, 28))  # one readable image: a run with skips
    assert CliRunner().invoke(app, args).exit_code == 0


def test_never_writes_into_the_source_folder(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_rgb(src / "a.png", _image(20, 20))
    with pytest.raises(Boxes2PixelsError, match="source folder"):
        predict_files(run_dir, src, src, device="cpu", progress=False)
    with pytest.raises(Boxes2PixelsError, match="source folder"):
        predict_files(run_dir, src, src / "pred", device="cpu", progress=False)
    with pytest.raises(Boxes2PixelsError, match="source folder"):
        predict_files(run_dir, src / "a.png", src, device="cpu", progress=False)
    with pytest.raises(Boxes2PixelsError, match="no images"):
        predict_files(run_dir, tmp_path / "nothing", tmp_path / "o", progress=False)


# ---------------------------------------------------------------------------------------------
# Region reports
# ---------------------------------------------------------------------------------------------


def test_describe_regions_on_a_hand_made_mask() -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[1:3, 1:4] = 1  # dirt, 6 px, box x 1..4, y 1..3
    mask[3, 4] = 1  # touches the first blob diagonally: same 8-connected region (7 px)
    mask[6:9, 8:12] = 1  # dirt, 12 px
    mask[5:7, 0:2] = 2  # damage, 4 px
    mask[0, 11] = 255  # ignore: not a region
    report = describe_regions(mask, NAMES)
    assert report["width"] == 12 and report["height"] == 10
    assert report["defect_area"]["dirt"] == {"pixels": 19, "fraction": 19 / 120}
    assert report["defect_area"]["damage"] == {"pixels": 4, "fraction": 4 / 120}
    regions = [(r["class"], r["class_id"], r["area"], r["bbox"]) for r in report["regions"]]
    assert regions == [
        ("dirt", 1, 12, [8, 6, 12, 9]),
        ("dirt", 1, 7, [1, 1, 5, 4]),
        ("damage", 2, 4, [0, 5, 2, 7]),
    ]
    assert report["regions"][0]["centroid"] == [9.5, 7.0]


def test_describe_regions_of_a_clean_image() -> None:
    report = describe_regions(np.zeros((4, 5), np.uint8), NAMES)
    assert report["regions"] == []
    assert report["defect_area"]["dirt"]["pixels"] == 0


# ---------------------------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected"),
    [(40, [0]), (56, [0]), (57, [0, 1]), (150, [0, 31, 63, 94]), (140, [0, 42, 84])],
    ids=["shorter", "exact", "one_more", "uneven", "even"],
)
def test_tile_starts_cover_the_length(length: int, expected: list[int]) -> None:
    starts = tile_starts(length, 56, 42)
    assert starts == expected
    assert all(b - a <= 42 for a, b in itertools.pairwise(starts))
    covered = np.zeros(max(length, 56), bool)
    for s in starts:
        covered[s : s + 56] = True
    assert covered[:length].all()


def test_ramp_weights_are_positive_and_flat_inside() -> None:
    w = ramp_weights(56, 14)
    assert w.shape == (56,) and (w > 0).all()
    assert w[0] < w[7] < w[14] == 1.0
    assert np.allclose(w, w[::-1])


def test_winning_class_is_argmax_and_keeps_the_first_of_tied_classes() -> None:
    logits = np.random.default_rng(0).integers(0, 3, (4, 50, 60)).astype(np.float32)
    got = winning_class(torch.from_numpy(logits), dim=0).numpy()
    assert got.dtype == np.uint8
    assert np.array_equal(got, logits.argmax(axis=0))  # numpy: the first of tied maxima


def test_tiled_matches_untiled_when_the_image_fits_one_tile(tiny_student) -> None:
    img = _image(56, 42, seed=3)
    untiled = tiny_student.predict([img], precision="fp32")[0]
    tiled = segment(tiny_student, img, tile=True, tile_size=56, precision="fp32").labels[0]
    assert tiled.shape == untiled.shape == (56, 42)
    assert (tiled == untiled).mean() > 0.95


def test_tiled_on_a_large_image_keeps_its_size(tiny_student) -> None:
    img = _image(70, 100, seed=4)  # 2 × 3 windows of 56
    tiled = segment(
        tiny_student, img, batch_size=3, tile=True, tile_size=56, precision="fp32"
    ).labels[0]
    assert tiled.shape == (70, 100)
    assert tiled.dtype == np.uint8 and tiled.max() < 3


class _PerPixel(torch.nn.Module):
    """A 1×1-conv 'model': each pixel's logits depend on that pixel only, so any correct
    stitching of overlapping tiles reproduces the whole-image result exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(
                torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])[..., None, None]
            )
            self.conv.bias.zero_()
        self.mean, self.std, self.imgsz = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 28
        self.patch_size = 14

    def forward(self, x: torch.Tensor, heads: object = None) -> dict[str, torch.Tensor]:
        return {"fine": self.conv(x)}


def test_tiled_stitching_is_exact_for_a_per_pixel_model() -> None:
    img = _image(97, 131, seed=5)
    expected = img.argmax(axis=2)  # the per-pixel model's argmax is the brightest channel
    calls: list[tuple[int, int]] = []
    result = segment(
        _PerPixel(), img, batch_size=2, callback=lambda d, t: calls.append((d, t)),
        tile=True, tile_overlap=0.5, precision="fp32",
    )  # fmt: skip
    tiled = result.labels[0]
    assert result.windows == 54 and result.plan is not None and result.plan.tile_size == 28
    # tile 28, stride 14: ceil((97 - 28) / 14) + 1 = 6 rows × ceil((131 - 28) / 14) + 1 = 9 columns
    assert calls[-1] == (54, 54)
    ties = np.sort(img, axis=2)[..., -1] == np.sort(img, axis=2)[..., -2]
    assert (tiled == expected)[~ties].all()


def test_cli_predict_with_tile_overlay_and_json(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_rgb(src / "big.png", _image(70, 120))
    write_rgb(src / "broken.png", _image(10, 10))
    (src / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "predict", str(run_dir), str(src), "--out", str(out), "--tile", "--tile-overlap", "0.5",
            "--overlay", "--json", "--device", "cpu", "--batch", "2",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert read_mask(out / "big.png").shape == (70, 120)
    assert (out / "big_overlay.jpg").is_file() and (out / "big.json").is_file()
    assert "skipped" in res.output and "broken.png" in res.output
    assert "1 masks written" in res.output


def test_tiled_memory_is_bounded_by_a_strip_not_the_image() -> None:
    import tracemalloc

    h, w, tile = 1200, 1800, 224
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 1] = 1  # every pixel: channel 1 brightest
    model = _PerPixel()
    model.imgsz = tile
    tracemalloc.start()
    try:
        labels = segment(model, img, batch_size=2, tile=True, precision="fp32").labels[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (labels == 1).all()
    whole_image_logits = 3 * h * w * 4  # what blending full-size logits would need: 26 MB
    assert peak < whole_image_logits / 2


# ---------------------------------------------------------------------------------------------
# Every kind of model: a baseline folder and an exported .onnx file
# ---------------------------------------------------------------------------------------------


def test_cli_predict_on_a_baseline_folder(baseline_dir: Path, tmp_path: Path) -> None:
    write_rgb(tmp_path / "src" / "a.png", _image(40, 70))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["predict", str(baseline_dir), str(tmp_path / "src"), "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    assert read_mask(out / "a.png").shape == (40, 70)
    recorded = json.loads((out / SUMMARY_NAME).read_text())
    assert recorded["class_names"] == NAMES and recorded["random_backbone"] is True
    assert recorded["settings"]["ran"]["runtime"] == "torch"
    assert "randomly initialised" in res.output


def test_cli_predict_on_an_onnx_file_picks_its_runtime(onnx_file: Path, tmp_path: Path) -> None:
    write_rgb(tmp_path / "src" / "a.png", _image(40, 70))
    write_rgb(tmp_path / "src" / "b.png", _image(64, 30))
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["predict", str(onnx_file), str(tmp_path / "src"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert read_mask(out / "a.png").shape == (40, 70)
    assert read_mask(out / "b.png").shape == (64, 30)
    expected = "openvino" if openvino_available() else "onnx"
    assert json.loads((out / SUMMARY_NAME).read_text())["settings"]["ran"]["runtime"] == expected


def test_runtime_that_does_not_fit_the_model_is_a_clear_error(
    onnx_file: Path, run_dir: Path, baseline_dir: Path, tmp_path: Path
) -> None:
    write_rgb(tmp_path / "src" / "a.png", _image(20, 20))
    with pytest.raises(Boxes2PixelsError, match="onnxruntime"):
        predict_files(onnx_file, tmp_path / "src", tmp_path / "o1", runtime="torch", progress=False)
    with pytest.raises(Boxes2PixelsError, match=r"\.onnx file"):
        predict_files(run_dir, tmp_path / "src", tmp_path / "o2", runtime="onnx", progress=False)
    with pytest.raises(Boxes2PixelsError, match="unknown runtime 'tflite'"):
        predict_files(run_dir, tmp_path / "src", tmp_path / "o3", runtime="tflite", progress=False)
    with pytest.raises(CheckpointError, match="not a student"):
        load_student(baseline_dir, "cpu")


def test_an_out_holding_masks_is_refused_and_overwrite_leaves_nothing_stale(
    run_dir: Path, tmp_path: Path
) -> None:
    """Predicting into a folder of ground-truth masks replaced them with exit code 0, and a
    second model's run over a subset mixed its masks with the first's under its summary."""
    src = tmp_path / "src"
    write_rgb(src / "a.png", _image(28, 28))
    write_rgb(src / "b.png", _image(28, 28))
    truth = tmp_path / "gt"
    truth.mkdir()
    (truth / "a.png").write_bytes(b"ground truth")
    with pytest.raises(Boxes2PixelsError, match=r"already holds 1 file.*a\.png.*--overwrite"):
        predict_files(run_dir, src, truth, device="cpu", progress=False)
    assert (truth / "a.png").read_bytes() == b"ground truth"
    assert sorted(p.name for p in truth.iterdir()) == ["a.png"]  # nothing written

    out = tmp_path / "out"
    predict_files(run_dir, src, out, device="cpu", progress=False)
    recorded = json.loads((out / "b2p_predict.json").read_text())["outputs"]
    assert recorded == ["a.png", "b.png"]
    with pytest.raises(Boxes2PixelsError, match="earlier prediction"):  # b.png would stay
        predict_files(run_dir, src / "a.png", out, device="cpu", progress=False)
    (out / "notes.txt").write_text("mine")
    predict_files(run_dir, src / "a.png", out, device="cpu", progress=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b2p_predict.json", "notes.txt"]
    assert json.loads((out / "b2p_predict.json").read_text())["outputs"] == ["a.png"]


def test_cli_predict_overwrite(run_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_rgb(src / "a.png", _image(28, 28))
    out = tmp_path / "out"
    args = ["predict", str(run_dir), str(src), "--out", str(out), "--device", "cpu"]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert "Traceback" not in again.output
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_cli_predict_says_which_asked_sizes_do_not_run_as_asked(
    run_dir: Path, tmp_path: Path
) -> None:
    """--tile-size and --tile-overlap without tiling did nothing without a word, and a tile
    size off the patch grid was rounded up silently."""
    write_rgb(tmp_path / "src" / "a.png", _image(40, 30))
    base = ["predict", str(run_dir), str(tmp_path / "src"), "--device", "cpu"]
    whole = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "o1"), "--tile-overlap", "0.5"])
    assert whole.exit_code == 0, whole.output
    assert "note:" in whole.output and "applies only to tiled inference" in whole.output
    tiled = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "o2"), "--tile", "--tile-size",
                                     "20"])  # fmt: skip
    assert tiled.exit_code == 0, tiled.output
    text = " ".join(tiled.output.split())
    assert "tile size 20 runs as 28 px (a multiple of the patch size 14)" in text
    ran = json.loads((tmp_path / "o2" / "b2p_predict.json").read_text())["settings"]["ran"]
    assert ran["tile_size"] == 28 and ran["notes"] == [
        "tile size 20 runs as 28 px (a multiple of the patch size 14)"
    ]
    plain = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "o3")])
    assert "applies only" not in plain.output and "runs as" not in plain.output


def test_photos_of_types_it_does_not_read_are_counted_not_left_out_silently(
    run_dir: Path, tmp_path: Path
) -> None:
    """A folder of JPEGs and iPhone/raw photos predicted the JPEGs with exit code 0 and no
    word about the rest."""
    src = tmp_path / "src"
    write_rgb(src / "a.jpg", _image(40, 30))
    for name in ("b.HEIC", "c.heic", "sub/d.dng", "notes.txt"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"not read")
    result = CliRunner().invoke(
        app, ["predict", str(run_dir), str(src), "--out", str(tmp_path / "o"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "3 files of image types b2p does not take left out (1 .dng, 2 .heic)" in text
    written = json.loads((tmp_path / "o" / SUMMARY_NAME).read_text())
    assert written["images"] == 1 and written["ignored"] == {".dng": 1, ".heic": 2}
    (src / "a.jpg").unlink()
    only = CliRunner().invoke(
        app, ["predict", str(run_dir), str(src), "--out", str(tmp_path / "p"), "--device", "cpu"]
    )
    assert only.exit_code != 0 and "no images found" in only.output
    assert "(1 .dng, 2 .heic)" in " ".join(only.output.split())
    assert "Traceback" not in only.output


def test_two_images_with_one_output_name_are_refused_before_anything_is_written(
    run_dir: Path, tmp_path: Path
) -> None:
    """t.jpg keeps its suffix (t.png shares its stem) and t.jpg.png's plain stem is the same
    t.jpg: one image's mask, overlay and report replaced the other's with exit code 0."""
    src = tmp_path / "src"
    for name in ("t.jpg", "t.png", "t.jpg.png"):
        write_rgb(src / name, _image(30, 20))
    out = tmp_path / "o"
    result = CliRunner().invoke(app, ["predict", str(run_dir), str(src), "--out", str(out)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert f"images {src / 't.jpg'} and {src / 't.jpg.png'} would both get the outputs" in text
    assert not out.exists()


def test_an_image_named_like_the_summary_blocks_only_its_report(
    run_dir: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    write_rgb(src / "b2p_predict.jpg", _image(30, 20))
    base = ["predict", str(run_dir), str(src), "--device", "cpu", "--out"]
    plain = CliRunner().invoke(app, [*base, str(tmp_path / "o1")])
    assert plain.exit_code == 0, plain.output
    assert (tmp_path / "o1" / "b2p_predict.png").is_file()
    with_json = CliRunner().invoke(app, [*base, str(tmp_path / "o2"), "--json"])
    assert with_json.exit_code != 0
    assert "b2p_predict.jpg: its report would overwrite" in " ".join(with_json.output.split())


def test_folders_linked_into_a_source_are_predicted_like_a_glob_finds_them(
    run_dir: Path, tmp_path: Path
) -> None:
    """A folder source skipped linked sub-folders without a word; a ** glob followed them."""
    elsewhere = tmp_path / "elsewhere"
    write_rgb(elsewhere / "b.png", _image(30, 20))
    src = tmp_path / "src"
    write_rgb(src / "a.png", _image(30, 20))
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "loop").symlink_to(src, target_is_directory=True)  # a loop ends
    result = CliRunner().invoke(
        app, ["predict", str(run_dir), str(src), "--out", str(tmp_path / "o"), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(
        p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*.png")
    ) == ["a.png", "linked/b.png"]


def test_the_batch_is_planned_per_device_and_recorded(
    tiny_student, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU ran 4 images per pass unless told otherwise (bf16 slower than fp32 there at
    small batches); the plan now decides, and b2p_predict.json says what ran."""
    import boxes2pixels.inference.segmentation as segmentation

    assert plan_inference(tiny_student).batch_size == 4
    assert plan_inference(tiny_student, batch_size=7).batch_size == 7
    monkeypatch.setattr(segmentation, "model_device", lambda model: torch.device("cuda", 0))
    assert plan_inference(tiny_student, precision="fp32").batch_size == 16
    assert plan_inference(tiny_student, precision="fp32", batch_size=2).batch_size == 2
    monkeypatch.undo()
    for bad in (0, -1, 2.5, "4", True):
        with pytest.raises(Boxes2PixelsError, match="batch size must be a whole number"):
            plan_inference(tiny_student, batch_size=bad)
    with pytest.raises(Boxes2PixelsError, match="batch size must be a whole number"):
        segment(tiny_student, _image(20, 20), plan_inference(tiny_student), batch_size="4")
    write_rgb(tmp_path / "src" / "a.png", _image(40, 30))
    base = ["predict", str(run_dir), str(tmp_path / "src"), "--device", "cpu", "--out"]
    for out, extra, expected in (("o1", [], 4), ("o2", ["--batch", "3"], 3)):
        result = CliRunner().invoke(app, [*base, str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        ran = json.loads((tmp_path / out / "b2p_predict.json").read_text())["settings"]["ran"]
        assert ran["batch_size"] == expected
        assert f"batch {expected}" in " ".join(result.output.split())


def test_a_run_cut_short_resumes_with_the_same_model_and_settings(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of photos: a killed run's rerun predicts only what is left (it was refused,
    or with --overwrite redone whole)."""
    import boxes2pixels.predict as predict_module

    src = tmp_path / "src"
    for name in ("a", "b", "c"):
        write_rgb(src / f"{name}.png", _image(28, 28))
    whole = predict_files(run_dir, src, tmp_path / "whole", device="cpu", progress=False)
    assert whole.resumed == 0

    real, calls = predict_module.segment, {"n": 0}

    def killed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "segment", killed)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        predict_files(run_dir, src, out, device="cpu", batch_size=1, progress=False)
    assert not json.loads((out / "b2p_predict.json").read_text())["finished"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    assert sorted(stamps) == ["a.png", "b.png"]
    with pytest.raises(Boxes2PixelsError, match="resumes by itself"):  # other settings
        predict_files(run_dir, src, out, device="cpu", overlay=True, progress=False)

    monkeypatch.setattr(predict_module, "segment", real)
    again = predict_files(run_dir, src, out, device="cpu", batch_size=1, progress=False)
    assert (again.resumed, again.images) == (2, 1)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("[ab].png")} == stamps
    summary = json.loads((out / "b2p_predict.json").read_text())
    assert summary["finished"] and summary["images"] == 3 and summary["resumed"] == 2
    assert summary["outputs"] == ["a.png", "b.png", "c.png"]
    assert not (out / ".b2p_predict.journal.jsonl").exists()
    for name in ("a.png", "b.png", "c.png"):
        np.testing.assert_array_equal(read_mask(out / name), read_mask(tmp_path / "whole" / name))
