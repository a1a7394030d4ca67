"""Fixed composite sets: layout, manifest, composite identity, background blocks, seeding, resume, CLI."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from bgmatting.data.check import check_manifest
from bgmatting.compose import main
from bgmatting.data.composite_sets import assign_backgrounds, build_composite_set
from bgmatting.io import read_alpha, read_image, read_trimap, write_alpha, write_image


def make_inputs(root: Path, n_fg=2, n_bg=6):
    rng = np.random.default_rng(0)
    fgs, alphas, bgs = [], [], []
    yy, xx = np.mgrid[:30, :40]
    alpha = np.clip((10 - np.hypot(yy - 15, xx - 20)) / 3 + 0.5, 0, 1).astype(np.float32)
    for i in range(n_fg):
        fgs.append(root / "fg" / f"fg{i}.png")
        alphas.append(root / "alpha" / f"fg{i}.png")
        write_image(fgs[-1], rng.random((30, 40, 3), dtype=np.float32))
        write_alpha(alphas[-1], alpha)
    for j in range(n_bg):
        bgs.append(root / "bg" / f"bg{j}.png")
        write_image(bgs[-1], rng.random((20, 25) if j == 0 else (50, 60, 3), dtype=np.float32))
    return fgs, alphas, bgs


def rows(manifest: Path) -> list[dict]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def test_composite_set_layout_and_identity(tmp_path):
    fgs, alphas, bgs = make_inputs(tmp_path / "in")
    manifest = build_composite_set(fgs, alphas, bgs, tmp_path / "out", per_fg=3, size=32, seed=0, progress=False)
    assert manifest == tmp_path / "out" / "manifest.csv"
    table = rows(manifest)
    assert len(table) == 6
    assert list(table[0]) == ["image", "background", "alpha", "trimap", "foreground", "fg_name", "bg_name"]
    for sub in ("image", "background", "alpha", "trimap", "foreground"):
        assert (tmp_path / "out" / sub).is_dir()
    assert not Path(table[0]["image"]).is_absolute() and table[0]["image"].startswith("image/")
    assert len({r["bg_name"] for r in table}) == 6  # disjoint blocks: 2 fg x 3 bg from a pool of 6
    for r in table[:2]:
        image, back = read_image(tmp_path / "out" / r["image"]), read_image(tmp_path / "out" / r["background"])
        fg, alpha = read_image(tmp_path / "out" / r["foreground"]), read_alpha(tmp_path / "out" / r["alpha"])
        assert image.shape == (32, 32, 3)
        np.testing.assert_allclose(image, alpha[..., None] * fg + (1 - alpha[..., None]) * back, atol=2.5 / 255)
        trimap = read_trimap(tmp_path / "out" / r["trimap"])
        assert np.all(trimap[(alpha > 0.01) & (alpha < 0.99)] == 128)
    assert check_manifest(manifest).ok


def test_native_size_seeding_and_given_trimaps(tmp_path):
    fgs, alphas, bgs = make_inputs(tmp_path / "in", n_bg=3)
    trimaps = []
    for i, a in enumerate(alphas):
        trimaps.append(tmp_path / "tri" / f"fg{i}.png")
        write_alpha(trimaps[-1], np.full((30, 40), 128, np.uint8))
    with pytest.warns(UserWarning, match="backgrounds repeat"):
        m = build_composite_set(fgs, alphas, bgs, tmp_path / "a", per_fg=2, seed=1, trimap_paths=trimaps,
                                progress=False)
    r = rows(m)
    assert read_image(tmp_path / "a" / r[0]["image"]).shape == (30, 40, 3)  # size=None keeps the fg's size
    assert np.all(read_trimap(tmp_path / "a" / r[0]["trimap"]) == 128)
    same = np.array_equal(assign_backgrounds(2, 50, 5, seed=1), assign_backgrounds(2, 50, 5, seed=1))
    assert same and not np.array_equal(assign_backgrounds(2, 50, 5, seed=1), assign_backgrounds(2, 50, 5, seed=2))
    np.testing.assert_array_equal(assign_backgrounds(2, 3, 2, shuffle=False), [[0, 1], [2, 0]])


def test_resume_keeps_existing_files_and_overwrite_redoes_them(tmp_path):
    fgs, alphas, bgs = make_inputs(tmp_path / "in")
    out = tmp_path / "out"
    m = build_composite_set(fgs, alphas, bgs, out, per_fg=1, size=16, progress=False)
    first = out / rows(m)[0]["image"]
    write_image(first, np.zeros((16, 16, 3)))  # a marker the resume must keep
    build_composite_set(fgs, alphas, bgs, out, per_fg=1, size=16, progress=False)
    assert read_image(first).max() == 0
    build_composite_set(fgs, alphas, bgs, out, per_fg=1, size=16, overwrite=True, progress=False)
    assert read_image(first).max() > 0


def test_cli_test_preset_and_errors(tmp_path, capsys):
    make_inputs(tmp_path / "in", n_fg=2, n_bg=3)
    out = tmp_path / "test_set"
    code = main(["--preset", "test", "--per-fg", "2", "--size", "24", "--max-fg", "1",
                 "--fg-dir", str(tmp_path / "in/fg"), "--alpha-dir", str(tmp_path / "in/alpha"),
                 "--bg-dir", str(tmp_path / "in/bg"), "--out", str(out)])
    assert code == 0 and len(rows(out / "manifest.csv")) == 2
    assert read_image(out / rows(out / "manifest.csv")[0]["image"]).shape == (24, 24, 3)
    (tmp_path / "none").mkdir()
    code = main(["--fg-dir", str(tmp_path / "none"), "--alpha-dir", str(tmp_path / "none"), "--bg-dir",
                 str(tmp_path / "in/bg"), "--out", str(tmp_path / "x")])
    assert code == 2 and "none: folder contains no images" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- bad input
COMPOSE_BAD_INPUT = [  # (case, arguments replacing the defaults, expected last stderr line)
    ("per-fg 0", ["--per-fg", "0"], r"per_fg must be >= 1, got 0"),
    ("size 0", ["--size", "0"], r"size must be >= 1 \(or None: each foreground's own size\), got 0"),
    ("size negative", ["--size", "-8"], r"size must be >= 1 .*got -8"),
    ("max-fg 0", ["--max-fg", "0"], r"max_fg must be >= 1, got 0"),
    ("max-fg negative", ["--max-fg", "-1"], r"max_fg must be >= 1, got -1"),
    ("missing fg folder", ["--fg-dir", "{tmp}/nope"], r"nope: folder does not exist"),
    ("fg without alpha", ["--alpha-dir", "{tmp}/in/bg"], r"fg0\.png: no alpha matte with this name in .*bg"),
    ("missing fg list", ["--fg-list", "{tmp}/list.txt"], r"list\.txt: name list does not exist"),
    ("missing trimap", ["--trimap-dir", "{tmp}/in/alpha_only_one"], r"fg1\.png: no trimap for foreground 'fg1\.png'"),
    ("trimap not a trimap", ["--trimap-dir", "{tmp}/in/alpha", "--out", "{tmp}/new"], r"fg\d\.png: not a trimap: "
                                                                                     r"uint8 values"),
    ("unknown fit", ["--fit", "squash"], r"argument --fit: invalid choice: 'squash'"),
    ("output is a file", ["--out", "{tmp}/in/fg/fg0.png"], r"fg0\.png: output exists and is not a folder"),
]


@pytest.mark.parametrize("case, arguments, expected", COMPOSE_BAD_INPUT, ids=[c[0] for c in COMPOSE_BAD_INPUT])
def test_compose_refuses_bad_input_with_one_line(tmp_path, capsys, case, arguments, expected):
    from bad_input import check_argparse_refusal

    make_inputs(tmp_path / "in", n_fg=2, n_bg=3)
    write_alpha(tmp_path / "in" / "alpha_only_one" / "fg0.png", np.full((30, 40), 128, np.uint8))
    defaults = {"--fg-dir": str(tmp_path / "in/fg"), "--alpha-dir": str(tmp_path / "in/alpha"),
                "--bg-dir": str(tmp_path / "in/bg"), "--out": str(tmp_path / "set"), "--per-fg": "1", "--size": "16"}
    assert main([x for k, v in defaults.items() for x in (k, v)]) == 0  # an earlier set nothing may change
    check_argparse_refusal(main, arguments, defaults, tmp_path, capsys, expected, allowed=[tmp_path / "new"])


def test_cli_lists_trimaps_fit_seed_and_overwrite(tmp_path):
    fgs, alphas, bgs = make_inputs(tmp_path / "in", n_fg=3, n_bg=4)
    (tmp_path / "fg_list.txt").write_text("fg2.png\nfg0.png\n")
    (tmp_path / "bg_list.txt").write_text("bg3.png\nbg1.png\n")
    (tmp_path / "tri").mkdir()
    for i in range(3):  # given trimaps: all unknown, stored as class indices
        cv2.imwrite(str(tmp_path / "tri" / f"fg{i}.png"), np.ones((30, 40), np.uint8))
    common = ["--fg-dir", str(tmp_path / "in/fg"), "--alpha-dir", str(tmp_path / "in/alpha"), "--bg-dir",
              str(tmp_path / "in/bg"), "--per-fg", "1", "--size", "20", "--workers", "1"]
    out = tmp_path / "listed"
    assert main([*common, "--out", str(out), "--fg-list", str(tmp_path / "fg_list.txt"), "--bg-list",
                 str(tmp_path / "bg_list.txt"), "--trimap-dir", str(tmp_path / "tri"), "--fit", "center_crop"]) == 0
    table = rows(out / "manifest.csv")
    assert [(r["fg_name"], r["bg_name"]) for r in table] == [("fg2.png", "bg3.png"), ("fg0.png", "bg1.png")]
    assert np.all(read_trimap(out / table[0]["trimap"]) == 128)  # the given trimap, not one made from alpha
    cropped = read_alpha(out / table[1]["alpha"])
    stretched = read_alpha(build_composite_set(fgs[:1], alphas[:1], bgs, tmp_path / "s", per_fg=1, size=20,
                                               progress=False).parent / "alpha" / "fg0.png")
    assert cropped.shape == stretched.shape == (20, 20) and not np.allclose(cropped, stretched)  # --fit changes it
    seeded = [[r["bg_name"] for r in rows(build_composite_set(fgs, alphas, bgs, tmp_path / f"seed{s}", per_fg=1,
                                                              size=8, seed=s, progress=False))] for s in (1, 2)]
    assert main([*common, "--out", str(tmp_path / "cli_seed"), "--seed", "2"]) == 0
    assert [r["bg_name"] for r in rows(tmp_path / "cli_seed" / "manifest.csv")] == seeded[1] != seeded[0]
    first = out / table[0]["image"]
    write_image(first, np.zeros((20, 20, 3)))
    listed = ["--fg-list", str(tmp_path / "fg_list.txt"), "--bg-list", str(tmp_path / "bg_list.txt")]
    assert main([*common, "--out", str(out), *listed]) == 0 and read_image(first).max() == 0  # resumed
    assert main([*common, "--out", str(out), *listed, "--overwrite"]) == 0 and read_image(first).max() > 0
