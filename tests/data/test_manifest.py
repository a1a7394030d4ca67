"""Manifest read/write and the manifest check CLI: each bad case reported with its path and reason."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bgmatting.check_data import main
from bgmatting.data.check import check_manifest
from bgmatting.io import DataError, write_alpha, write_image
from bgmatting.data.manifest import read_manifest, write_manifest


def good_row(folder: Path, name: str, size=(8, 10)) -> dict:
    write_image(folder / f"{name}_i.png", np.full(size + (3,), 0.5))
    write_image(folder / f"{name}_b.jpg", np.full(size + (3,), 0.2))
    write_alpha(folder / f"{name}_a.png", np.zeros(size))
    write_alpha(folder / f"{name}_t.png", np.zeros(size, np.uint8))
    return {"image": folder / f"{name}_i.png", "background": folder / f"{name}_b.jpg",
            "alpha": folder / f"{name}_a.png", "trimap": folder / f"{name}_t.png", "fg_name": f"{name}.png"}


def test_round_trip_with_relative_and_absolute_paths(tmp_path):
    row = good_row(tmp_path / "set" / "files", "x")
    row["background"] = Path("/abs/elsewhere.png")
    m = write_manifest(tmp_path / "set" / "m.csv", [row])
    text = m.read_text().splitlines()
    assert text[0] == "image,background,alpha,trimap,fg_name"
    assert text[1].startswith("files/x_i.png,/abs/elsewhere.png,files/x_a.png,")
    (tmp_path / "set").rename(tmp_path / "moved")  # relative paths follow the manifest
    man = read_manifest(tmp_path / "moved" / "m.csv", required_columns=("image", "alpha"))
    assert len(man) == 1 and man.line(0) == 2
    assert man.file(0, "image") == tmp_path / "moved" / "files" / "x_i.png"
    assert man.file(0, "background") == Path("/abs/elsewhere.png")
    assert man.rows[0]["fg_name"] == "x.png"


def test_read_errors(tmp_path):
    with pytest.raises(DataError, match="nope.csv: manifest does not exist"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="no header"):
        read_manifest(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("image,alpha\n\n")
    with pytest.raises(DataError, match="header.csv: manifest has no rows"):
        read_manifest(tmp_path / "header.csv")
    with pytest.raises(DataError, match="lacks column.*trimap"):
        read_manifest(tmp_path / "header.csv", required_columns=("image", "trimap"))


def test_check_accepts_a_good_manifest(tmp_path, capsys):
    m = write_manifest(tmp_path / "m.csv", [good_row(tmp_path, "a"), good_row(tmp_path, "b")])
    assert main([str(m), "--no-progress"]) == 0
    assert "2 rows checked, 2 good, 0 bad" in capsys.readouterr().out


def test_check_reports_each_bad_row_with_path_and_reason(tmp_path, capsys):
    rows = [good_row(tmp_path, n) for n in ("ok", "missing", "cut", "size", "alpha3", "gray16", "empty")]
    rows[1]["image"] = tmp_path / "nowhere.png"                              # row pointing nowhere
    data = rows[2]["background"].read_bytes()
    rows[2]["background"].write_bytes(data[: len(data) // 2])               # truncated JPEG
    write_image(rows[3]["background"], np.zeros((9, 10, 3)))                 # mismatched size
    cv2.imwrite(str(rows[4]["alpha"]), np.dstack([np.zeros((8, 10), np.uint8), np.full((8, 10), 9, np.uint8),
                                                  np.zeros((8, 10), np.uint8)]))  # 3 different channels
    cv2.imwrite(str(rows[5]["image"]), np.full((8, 10), 40000, np.uint16))   # 16-bit gray: converted, fine
    rows[6]["trimap"] = ""                                                   # empty cell
    m = write_manifest(tmp_path / "m.csv", rows)
    with m.open("a") as f:
        f.write("ok_i.png,ok_b.jpg,ok_a.png,ok_t.png,x.png,EXTRA\n")         # too many cells
    report = check_manifest(m)
    assert report.rows == 8 and report.bad_lines == [3, 4, 5, 6, 8, 9]
    assert main([str(m), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"line 3: column 'image' {tmp_path / 'nowhere.png'}: file does not exist" in out
    assert "line 4: column 'background'" in out and "cut_b.jpg: cannot decode" in out
    assert "line 5: row: sizes disagree: image 10x8, background 10x9" in out
    assert "line 6: column 'alpha'" in out and "alpha3_a.png: alpha must be single-channel" in out
    assert "line 8: column 'trimap': empty path" in out
    assert "line 9: row: 6 cells but the header has 5 columns" in out
    assert "8 rows checked, 2 good, 6 bad" in out


def test_check_of_a_missing_manifest_is_bad_input(tmp_path, capsys):
    assert main([str(tmp_path / "gone.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "gone.csv" in err and "does not exist" in err


def test_check_reads_trimaps_in_their_recognised_encodings_only(tmp_path, capsys):
    rows = [good_row(tmp_path, n) for n in ("standard", "index", "junk")]
    cv2.imwrite(str(rows[0]["trimap"]), np.array([[0, 128, 255] * 3 + [0]] * 8, np.uint8))
    cv2.imwrite(str(rows[1]["trimap"]), np.array([[0, 1, 2] * 3 + [0]] * 8, np.uint8))  # class indices: fine
    cv2.imwrite(str(rows[2]["trimap"]), np.array([[0, 7, 255] * 3 + [0]] * 8, np.uint8))
    m = write_manifest(tmp_path / "m.csv", rows)
    assert main([str(m), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert f"line 4: column 'trimap' {rows[2]['trimap']}: not a trimap: uint8 values 0, 7, 255" in out
    assert "3 rows checked, 2 good, 1 bad" in out


def test_an_unreadable_manifest_is_not_summarised_as_rows(tmp_path, capsys):
    (tmp_path / "garbage.csv").write_bytes(b"")
    report = check_manifest(tmp_path / "garbage.csv")
    assert not report.readable and report.rows == 0 and report.bad_lines == []
    assert "-1 good" not in report.summary() and "not checked" in report.summary()
    assert main([str(tmp_path / "garbage.csv"), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "garbage.csv" in captured.err


def test_check_refuses_the_manifests_evaluation_refuses_with_the_same_line(tmp_path):
    from bgmatting.data.adobe import CompositeSetDataset

    path = tmp_path / "names.csv"
    path.write_text("name,photo\nx,x.png\n")
    with pytest.raises(DataError) as refused:
        CompositeSetDataset(path)
    report = check_manifest(path)
    assert not report.readable and report.rows == 0 and report.problems[0].reason == str(refused.value)


CHECK_BAD_INPUT = [  # (case, manifest file name, its content or None for none, expected last stderr line)
    ("missing", "gone.csv", None, r"gone\.csv: manifest does not exist"),
    ("empty", "empty.csv", "", r"empty\.csv: manifest is empty"),
    ("no rows", "header.csv", "image,background,alpha,trimap\n", r"header\.csv: manifest has no rows"),
    ("columns it does not know", "other.csv", "photo,matte\na.png,b.png\n",
     r"other\.csv: manifest lacks column\(s\) image, background, alpha, trimap \(has photo, matte\)$"),
    ("not every column evaluate needs", "partial.csv", "image,alpha\na.png,b.png\n",
     r"partial\.csv: manifest lacks column\(s\) background, trimap \(has image, alpha\)$"),
    ("folder without manifest.json", "folder", "<folder>", r"folder/manifest\.json: real-captures manifest does not exist"),
    ("not JSON", "bad.json", "{not json", r"bad\.json: not a valid JSON manifest"),
    ("foreign JSON", "list.json", "[1, 2]", r"list\.json: not a real-captures manifest"),
    ("clips not a list", "five.json", '{"format": "bgmatting/real-captures", "clips": 5}',
     r'five\.json: "version" must be a number and "clips" a list'),
    ("clip without path", "nopath.json", '{"format": "bgmatting/real-captures", "clips": [{"name": "x"}]}',
     r"nopath\.json: clip #0 lacks name/path/n_frames"),
    ("workers not a number", "--workers", "many", r"argument --workers: invalid int value: 'many'"),
]


@pytest.mark.parametrize("case, name, content, expected", CHECK_BAD_INPUT, ids=[c[0] for c in CHECK_BAD_INPUT])
def test_check_data_refuses_unreadable_manifests_with_one_line(tmp_path, capsys, case, name, content, expected):
    from bad_input import check_argparse_refusal

    good = write_manifest(tmp_path / "good.csv", [good_row(tmp_path, "a")])
    if name == "--workers":
        arguments = [str(good), "--workers", content]
    else:
        if content == "<folder>":
            (tmp_path / name).mkdir()
        elif content is not None:
            (tmp_path / name).write_text(content)
        arguments = [str(tmp_path / name)]
    check_argparse_refusal(main, [*arguments, "--no-progress"], {}, tmp_path, capsys, expected)
