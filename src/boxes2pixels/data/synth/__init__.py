"""Synthetic wind-turbine-blade inspection data with exact ground-truth masks.

Each scene imitates a drone photo of a blade: a sky background (gradient, clouds, sometimes a
hazy horizon), a large blade surface crossing the frame (curved, tapering band with a
leading edge, cross-section shading, fine texture) and, on some images, defects of two
classes:

- ``dirt`` (YOLO class 0, mask value 1): soft stains, bug-splatter dots, chordwise streaks;
- ``damage`` (YOLO class 1, mask value 2): thin branching cracks, leading-edge erosion, chips.

Distractors that are *not* defects and never appear in the ground truth make the problem
hard the way real data does: panel seams, leading-edge protection tape, lightning receptors,
cast shadows, specular highlights, blur, sensor noise and JPEG artefacts. Boxes are loose
(random padding on each side) and a fraction of the subtlest defects get no box at all; they
are still in the ground-truth mask (what a self-correcting student should recover).

Everything is deterministic for a seed: image ``i`` of split ``s`` is drawn from its own
generator seeded by ``(seed, s, i)``, so generating a subset reproduces the same images.

Modules: :mod:`.config` (classes and :class:`SynthConfig`), :mod:`.fields` (noise and ramps
on pixel grids), :mod:`.blade` (sky, blade geometry and paint), :mod:`.defects` (defect
shapes), :mod:`.scene` (one photo: defects placed, lit and photographed) and :mod:`.writer`
(datasets on disk and ``synth.json``).
"""

from __future__ import annotations

from .config import (
    CLASS_NAMES,
    DAMAGE,
    DAMAGE_KINDS,
    DEFAULT_SIZE,
    DIRT,
    DIRT_KINDS,
    SynthConfig,
)
from .scene import Scene, SynthDefect, render_scene
from .writer import (
    MANIFEST_NAME,
    generate_dataset,
    image_name,
    load_manifest,
    scene_rng,
    summary_table,
)

__all__ = [
    "CLASS_NAMES",
    "DAMAGE",
    "DAMAGE_KINDS",
    "DEFAULT_SIZE",
    "DIRT",
    "DIRT_KINDS",
    "MANIFEST_NAME",
    "Scene",
    "SynthConfig",
    "SynthDefect",
    "generate_dataset",
    "image_name",
    "load_manifest",
    "render_scene",
    "scene_rng",
    "summary_table",
]
