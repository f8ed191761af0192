"""Fault injection, inputs and outputs: a user's folders are never wiped, every bad input is
named in one line, and results that look plausible but are not are refused or flagged.

Each test reproduces one fault (a command deleting what was in its output folder, a download
deleting a good file, labels outside the tissue classes, a sheared registration passing QC,
a misleading or multi-line error) and checks the behaviour that replaces it.
"""

from __future__ import annotations

import hashlib
import http.server
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import LocalServer

from mrbench.checkpoint import MODEL_FORMAT
from mrbench.cli import main
from mrbench.io import InputError

SIZE = 16
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def _identity_model(path: Path) -> Path:
    rec = {"format": MODEL_FORMAT, "method": "identity", "plugin": "identity", "params": {}}
    torch.save(rec | {"image_size": SIZE, "state": {}, "meta": {}}, path)
    return path


def _head(shape=(20, 20, 8), seed=0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    mask = (x / 0.6) ** 2 + (y / 0.55) ** 2 + (z / 0.9) ** 2 < 1
    t1 = (0.6 + rng.normal(0, 0.02, shape)) * mask
    t2 = (0.4 + rng.normal(0, 0.02, shape)) * mask
    return np.clip(t1, 0, 1).astype(np.float32), np.clip(t2, 0, 1).astype(np.float32), mask


def _subject_dirs(base: Path, n: int = 2, label: np.ndarray | None = None) -> list:
    from mrbench.slices import SubjectVolumes

    subjects = []
    for i in range(n):
        t1, t2, mask = _head(seed=i)
        d = base / "subjects" / f"s{i}"
        d.mkdir(parents=True)
        vols = {"t1": t1, "t2": t2, "mask": mask.astype(np.uint8)}
        if label is not None:
            vols["label"] = label
        for name, arr in vols.items():
            nib.save(nib.Nifti1Image(arr, AFFINE), d / f"{name}.nii.gz")
        subjects.append(SubjectVolumes.in_dir(f"s{i}", d))
    return subjects


@pytest.fixture
def test_split(tmp_path: Path) -> Path:
    from mrbench.slices import build_split

    return build_split(_subject_dirs(tmp_path), tmp_path / "slices" / "test", SIZE, 4)


def _translate_split(store: Path, model: Path, out: Path, *extra: str) -> int:
    args = ["--checkpoint", str(model), "--store", str(store), "--direction", "t1_to_t2"]
    return main(["translate", *args, "--out-dir", str(out), "--device", "cpu", *extra])


# ------------------------------------------------------------------ never delete a user's files
def test_translate_keeps_files_already_in_out_dir(tmp_path: Path, test_split: Path, capsys):
    model = _identity_model(tmp_path / "model.pt")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    assert _translate_split(test_split, model, out) == 1
    err = _one_line_error(capsys)
    assert str(out) in err and "--overwrite" in err
    assert (out / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mine")]
    # the explicit case replaces it
    assert _translate_split(test_split, model, out, "--overwrite") == 0
    assert (out / "s0.nii.gz").exists() and not (out / "notes.txt").exists()


def test_translate_reruns_into_its_own_out_dir(tmp_path: Path, test_split: Path) -> None:
    model = _identity_model(tmp_path / "model.pt")
    out = tmp_path / "pred"
    assert _translate_split(test_split, model, out) == 0
    first = (out / "timing.json").read_text()
    assert _translate_split(test_split, model, out) == 0  # its own earlier output: replaced
    assert (out / "s1.nii.gz").exists() and (out / "timing.json").read_text() != ""
    assert first


def test_translate_into_the_slice_store_leaves_the_store(tmp_path: Path, test_split, capsys):
    model = _identity_model(tmp_path / "model.pt")
    before = sorted(p.name for p in test_split.iterdir())
    assert _translate_split(test_split, model, test_split) == 1
    assert str(test_split) in _one_line_error(capsys)
    assert _translate_split(test_split, model, test_split, "--overwrite") == 1
    assert "slice store" in _one_line_error(capsys)
    assert sorted(p.name for p in test_split.iterdir()) == before


def test_translate_out_dir_dot_names_the_problem(
    tmp_path: Path, test_split: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _identity_model(tmp_path / "model.pt")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _translate_split(test_split, model, Path(".")) == 1
    err = _one_line_error(capsys)
    assert "PosixPath" not in err and "empty name" not in err
    assert "output folder" in err


def test_subject_import_keeps_a_user_folder(tmp_path: Path) -> None:
    """The replace-the-folder step of every archive import (BraTS, MSD)."""
    from mrbench.datasets import build_subject_folder

    def worker(case: str, out_dir: Path) -> dict:
        out_dir.mkdir(parents=True)
        (out_dir / "t1.nii.gz").write_bytes(b"x")
        return {}

    out = tmp_path / "subjects"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError) as err:
        build_subject_folder(["a", "b"], worker, out)
    assert str(out) in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert [p.name for p in tmp_path.iterdir()] == ["subjects"]  # no staging left behind
    build_subject_folder(["a", "b"], worker, out, overwrite=True)
    assert (out / "a" / "t1.nii.gz").exists() and not (out / "thesis.tex").exists()
    build_subject_folder(["c"], worker, out)  # its own folder: replaced without a word
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "c",
        "import.json",
        "import.tsv",
    ]


def test_import_brats_cli_refuses_a_non_empty_out_before_any_work(tmp_path: Path, capsys):
    out = tmp_path / "subjects"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    source = tmp_path / "missing.tar.gz"  # never reached: the folder is checked first
    args = ["import-brats", "--source", str(source), "--out", str(out)]
    rc = main([*args, "--splits", str(tmp_path / "s.tsv"), "--workdir", str(tmp_path / "w")])
    assert rc == 1
    err = _one_line_error(capsys)
    assert str(out) in err and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"


class _Payload(http.server.BaseHTTPRequestHandler):
    body = b"new bytes from the server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def test_download_with_wrong_md5_keeps_the_good_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "archive.tar"
    good = b"the archive the user already verified"
    out.write_bytes(good)
    wrong = hashlib.md5(b"something else").hexdigest()
    with LocalServer(_Payload, "archive.tar") as srv:
        args = ["--url", srv.url, "--out", str(out), "--md5", wrong, "--no-progress"]
        assert main(["download", *args]) == 1
    err = _one_line_error(capsys)
    assert "md5 mismatch" in err and str(out) in err
    assert out.read_bytes() == good
    assert not out.with_name("archive.tar.part").exists()


# ------------------------------------------------------------------ one line, not a traceback
def _tiny_params(method: str) -> tuple[str, dict]:
    from conftest import load_config

    entry = load_config()["methods"][method]
    return entry["plugin"], dict(entry.get("params") or {})


@pytest.mark.parametrize(
    ("method", "key"),
    [("cyclegan", "ngf"), ("cyclegan", "ndf"), ("mguit", "content_ch"), ("instaformer", "heads")],
)
def test_zero_width_is_refused_by_the_config_check(method: str, key: str) -> None:
    from mrbench_methods import get_plugin

    plugin, params = _tiny_params(method)
    with pytest.raises(ValueError, match=rf"^{key}: 0 ") as err:
        get_plugin(plugin).check_params({**params, key: 0}, 16)
    assert "\n" not in str(err.value)


def test_zero_width_names_the_config_key() -> None:
    from conftest import load_config

    from mrbench.config.resolve import ConfigError, check_config

    cfg = load_config()
    cfg["methods"] = {"cyclegan": cfg["methods"]["cyclegan"]}
    cfg["methods"]["cyclegan"]["params"]["ngf"] = 0
    with pytest.raises(ConfigError, match=r"methods\.cyclegan\.params\.ngf: 0 "):
        check_config(cfg)


@pytest.mark.parametrize(
    ("code", "text"),
    [(28, "No space left on device"), (30, "Read-only file system"), (13, "Permission denied")],
)
def test_disk_full_and_read_only_folders_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, code: int, text: str
) -> None:
    import mrbench.cli.phantom as phantom_cli

    target = tmp_path / "out" / "phantom001_t1.nii.gz"

    def fail(*args, **kwargs):
        raise OSError(code, text, str(target))

    monkeypatch.setattr(phantom_cli, "write_phantom", fail)
    rc = main(["phantom", "--out", str(tmp_path / "out"), "--n-subjects", "3"])
    assert rc == 1
    err = _one_line_error(capsys)
    assert str(target) in err and text in err


def _broken_entry_point(site: Path) -> Path:
    info = site / "mrbench_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mrbench-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[mrbench.methods]\nbroken = mrbench_no_such_module_xyz:Method\n"
    )
    return site


def test_broken_entry_point_only_stops_what_needs_it(
    tmp_path: Path, test_split: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import mrbench_methods.base as base

    monkeypatch.syspath_prepend(str(_broken_entry_point(tmp_path / "site")))
    monkeypatch.setattr(base, "_ENTRY_POINTS_LOADED", False)
    monkeypatch.setattr(base, "_BROKEN_ENTRY_POINTS", {})
    model = _identity_model(tmp_path / "model.pt")
    # a command that does not need the broken plugin works
    assert _translate_split(test_split, model, tmp_path / "pred") == 0
    assert (tmp_path / "pred" / "s0.nii.gz").exists()
    # the plugin itself is a one-line error naming the entry point
    with pytest.raises(KeyError) as err:
        base.get_plugin("broken")
    msg = str(err.value.args[0])
    assert "broken" in msg and "mrbench_no_such_module_xyz" in msg and "\n" not in msg


def _register_for_test(monkeypatch: pytest.MonkeyPatch, name: str, translate) -> None:
    """A non-trainable plugin ``name`` whose ``translate`` is ``translate``, in the registry for
    this test only (never seen by the contract tests)."""
    import mrbench_methods.base as base
    from mrbench_methods import get_plugin

    cls = type(name, (get_plugin("identity"),), {"translate": translate, "plugin_name": name})
    monkeypatch.setitem(base._REGISTRY, name, cls)


def test_plugin_returning_three_channels_fails_training(
    phantom_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from conftest import tiny_training, train_cli_args

    _register_for_test(monkeypatch, "rgb_test", lambda self, x, d: x.repeat(1, 3, 1, 1))
    spec = {"method": "rgb_test", "plugin": "rgb_test", "params": {}}
    spec["training"] = tiny_training(1, 1)
    out = tmp_path / "run"
    assert main(train_cli_args(phantom_store, out, spec)) == 1
    log = capsys.readouterr().err
    assert "Traceback" not in log
    err = log.strip().splitlines()[-1]  # the trainer logs to stderr before it
    assert "rgb_test" in err and "3 channels" in err
    assert not (out / "model.pt").exists()


def test_model_returning_three_channels_is_one_line_in_translate(
    tmp_path: Path, test_split: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _register_for_test(monkeypatch, "rgb_test", lambda self, x, d: x.repeat(1, 3, 1, 1))
    rec = {"format": MODEL_FORMAT, "method": "rgb_test", "plugin": "rgb_test", "params": {}}
    torch.save(rec | {"image_size": SIZE, "state": {}, "meta": {}}, tmp_path / "model.pt")
    assert _translate_split(test_split, tmp_path / "model.pt", tmp_path / "pred") == 1
    err = _one_line_error(capsys)
    assert "rgb_test" in err and "3 channels" in err
    assert not (tmp_path / "pred").exists()


def _empty_test_split(path: Path) -> Path:
    path.write_text("subject\tsplit\ns0\ttrain\ns1\ttrain\ns2\tval\n")
    return path


def test_empty_test_split_is_refused_when_read(tmp_path: Path) -> None:
    from mrbench.datasets.splits import read_splits

    path = _empty_test_split(tmp_path / "split.tsv")
    with pytest.raises(InputError, match="test") as err:
        read_splits(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_empty_test_split_stops_the_workflow_at_parse_time(tmp_path: Path) -> None:
    """The check the workflow runs on every parse, before any job."""
    from conftest import load_config

    from mrbench.config.resolve import ConfigError, check_split_files

    cfg = load_config()
    n = cfg["datasets"]["phantom"]["n_subjects"]
    rows = [f"phantom{i:03d}\t{'val' if i == 1 else 'train'}" for i in range(1, n + 1)]
    path = tmp_path / "empty_test.tsv"
    path.write_text("subject\tsplit\n" + "\n".join(rows) + "\n")
    cfg["datasets"] = {"phantom": {**cfg["datasets"]["phantom"], "split_file": str(path)}}
    with pytest.raises(ConfigError, match="test split is empty") as err:
        check_split_files(cfg)
    assert str(path) in str(err.value)


# ------------------------------------------------------------------ errors that name the cause
def _store_copy(store: Path, dest: Path) -> Path:
    """A writable copy of a slice store (``train/``, ``val/``, ``test/``)."""
    import shutil

    shutil.copytree(store, dest)
    return dest


def _poison(split_dir: Path, name: str = "t1.npy", row: int = 0) -> None:
    arr = np.load(split_dir / name)
    arr[row, 3, 3] = np.nan
    np.save(split_dir / name, arr)


def test_nan_in_training_data_is_named_as_data_not_divergence(
    phantom_store: Path, tmp_path: Path, capsys
) -> None:
    from conftest import cyclegan_spec, tiny_training, train_cli_args

    store = _store_copy(phantom_store, tmp_path / "slices")
    for row in range(len(np.load(store / "train" / "t1.npy"))):
        _poison(store / "train", row=row)
    spec = cyclegan_spec("cyclegan_tiny", tiny_training(2, 1, log_every=1))
    assert main(train_cli_args(store, tmp_path / "run", spec)) == 1
    log = capsys.readouterr().err
    line = log.strip().splitlines()[-1]
    assert "Traceback" not in log and "non-finite" in line
    assert str(store / "train") in line and "slice store" in line
    assert "loss" not in line and "diverg" not in line


def test_nan_in_training_data_of_a_fitted_method_is_named(
    phantom_store: Path, tmp_path: Path, capsys
) -> None:
    from conftest import tiny_training, train_cli_args

    store = _store_copy(phantom_store, tmp_path / "slices")
    _poison(store / "train", "t2.npy", row=2)
    spec = {"method": "intensity_map", "plugin": "intensity_map", "params": {}}
    spec["training"] = tiny_training(1, 1)
    assert main(train_cli_args(store, tmp_path / "run", spec)) == 1
    log = capsys.readouterr().err
    line = log.strip().splitlines()[-1]
    assert "Traceback" not in log and str(store / "train") in line and "non-finite" in line


def test_nan_in_test_slices_is_named_as_data_not_model(
    tmp_path: Path, test_split: Path, capsys
) -> None:
    _poison(test_split, "t1.npy", row=1)
    model = _identity_model(tmp_path / "model.pt")
    assert _translate_split(test_split, model, tmp_path / "pred") == 1
    err = _one_line_error(capsys)
    assert str(test_split) in err and "non-finite" in err and "model" not in err
    assert not (tmp_path / "pred").exists()


def test_non_finite_last_checkpoint_is_not_called_finite(
    phantom_store: Path, tmp_path: Path, capsys
) -> None:
    from conftest import cyclegan_spec, tiny_training, train_cli_args

    from mrbench.checkpoint import load_checkpoint, save_checkpoint

    spec = cyclegan_spec("cyclegan_tiny", tiny_training(2, 1, log_every=1))
    out = tmp_path / "run"
    assert main(train_cli_args(phantom_store, out, spec)) == 0
    last = out / "checkpoints" / "last.pt"
    ck = load_checkpoint(last)
    ck["step"] = 1
    weights = ck["method"]["model"]
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = torch.full_like(weights[first], math.nan)
    save_checkpoint(ck, last)
    (out / "model.pt").unlink()
    capsys.readouterr()
    assert main(train_cli_args(phantom_store, out, spec)) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(last) in line and "non-finite" in line and "last finite" not in line


# ------------------------------------------------------------------ tissue labels
def _label_volume(value: int) -> np.ndarray:
    _, _, mask = _head()
    label = (mask * 2).astype(np.float32)
    label[10, 10, 4] = value
    return label


@pytest.mark.parametrize("value", [7, -1, 2.5])
def test_label_outside_the_tissue_classes_is_refused_by_the_store(
    tmp_path: Path, value: float
) -> None:
    from mrbench.slices import build_split

    subjects = _subject_dirs(tmp_path, 1, label=_label_volume(value))
    with pytest.raises(InputError) as err:
        build_split(subjects, tmp_path / "slices" / "train", SIZE, 4)
    msg = str(err.value)
    assert str(subjects[0].label) in msg and "0-4" in msg and "\n" not in msg
    assert not (tmp_path / "slices" / "train").exists()


def _labelled_split(tmp_path: Path) -> Path:
    from mrbench.slices import build_split

    subjects = _subject_dirs(tmp_path, 2, label=_label_volume(3))
    return build_split(subjects, tmp_path / "slices" / "train", SIZE, 4)


def test_label_npy_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    from mrbench.slices import SliceStore

    split = _labelled_split(tmp_path)
    label = np.load(split / "label.npy")
    np.save(split / "label.npy", label[:, :-2, :-2].copy())  # same count, smaller slices
    with pytest.raises(InputError, match="label.npy") as err:
        SliceStore(split, labels=True)[0]
    assert "shape" in str(err.value)


def test_label_npy_values_outside_the_classes_are_refused(tmp_path: Path) -> None:
    from mrbench.slices import SliceStore

    split = _labelled_split(tmp_path)
    label = np.load(split / "label.npy")
    label[1, 5, 5] = 9
    np.save(split / "label.npy", label)
    with pytest.raises(InputError, match="label.npy") as err:
        SliceStore(split, labels=True)[0]
    assert "0-4" in str(err.value) and "9" in str(err.value)


def test_items_per_class_must_cover_every_tissue_class() -> None:
    from mrbench_methods import get_plugin

    for method in ("mguit", "hifi_syn"):
        plugin, params = _tiny_params(method)
        with pytest.raises(ValueError, match=r"^items_per_class: .*5") as err:
            get_plugin(plugin).check_params({**params, "items_per_class": [1, 1, 1]}, 16)
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------ smaller silent results
@pytest.mark.parametrize(("pred_scale", "target_scale"), [(1, 255), (1000, 1), (1, 1000)])
def test_metrics_refuses_prediction_and_target_on_different_scales(
    tmp_path: Path, capsys, pred_scale: float, target_scale: float
) -> None:
    t1, t2, mask = _head()
    nib.save(nib.Nifti1Image(t2 * pred_scale, AFFINE), tmp_path / "pred.nii.gz")
    nib.save(nib.Nifti1Image(t2 * target_scale, AFFINE), tmp_path / "target.nii.gz")
    args = ["--pred", str(tmp_path / "pred.nii.gz"), "--target", str(tmp_path / "target.nii.gz")]
    assert main(["metrics", *args]) == 1
    err = _one_line_error(capsys)
    assert "target.nii.gz" in err and "pred.nii.gz" in err and "scale" in err


def test_metrics_accepts_a_common_scale(tmp_path: Path, capsys) -> None:
    """Both volumes on one scale (here 0-255): the protocols normalise them alike."""
    import json

    t1, t2, mask = _head()
    nib.save(nib.Nifti1Image(t2 * 255 * 0.9, AFFINE), tmp_path / "pred.nii.gz")
    nib.save(nib.Nifti1Image(t2 * 255, AFFINE), tmp_path / "target.nii.gz")
    args = ["--pred", str(tmp_path / "pred.nii.gz"), "--target", str(tmp_path / "target.nii.gz")]
    assert main(["metrics", *args]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["psnr"]["mean"] > 10


def test_plugin_output_outside_the_image_range_is_refused(
    tmp_path: Path, test_split: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _register_for_test(monkeypatch, "loud_test", lambda self, x, d: x * 3)
    rec = {"format": MODEL_FORMAT, "method": "loud_test", "plugin": "loud_test", "params": {}}
    torch.save(rec | {"image_size": SIZE, "state": {}, "meta": {}}, tmp_path / "model.pt")
    assert _translate_split(test_split, tmp_path / "model.pt", tmp_path / "pred") == 1
    err = _one_line_error(capsys)
    assert "loud_test" in err and "[-1, 1]" in err and "outside" in err
    assert not (tmp_path / "pred").exists()


def test_plugin_output_outside_the_image_range_fails_training(
    phantom_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from conftest import tiny_training, train_cli_args

    _register_for_test(monkeypatch, "loud_test", lambda self, x, d: x * 3)
    spec = {"method": "loud_test", "plugin": "loud_test", "params": {}}
    spec["training"] = tiny_training(1, 1)
    assert main(train_cli_args(phantom_store, tmp_path / "run", spec)) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "loud_test" in line and "outside the image range" in line


def test_content_map_files_of_two_pairs_never_collide() -> None:
    """(phantom, x_mguit) and (phantom_x, mguit) are two figures, not one file written twice."""
    import re

    root = Path(__file__).resolve().parents[1]
    text = (root / "workflow" / "rules" / "common.smk").read_text()
    template = re.search(r'^CONTENT_MAPS = f"(.*)"$', text, re.M).group(1)
    template = template.replace("{FIGURES_DIR}", "figures").replace("{{", "{").replace("}}", "}")
    a = template.format(dataset="phantom", method="x_mguit")
    b = template.format(dataset="phantom_x", method="mguit")
    assert a != b


def test_pipe_in_a_label_keeps_the_markdown_columns() -> None:
    import re

    from mrbench.reporting.render import Cell, TableDoc

    doc = TableDoc(
        "Results",
        [[("Method", 1), ("PSNR", 1)]],
        [[Cell("mine | v2"), Cell("30.1", bold=True)], [Cell("two\nlines"), Cell("29.0")]],
        "lr",
    )
    rows = [line for line in doc.markdown().splitlines() if line.startswith("|")]
    unescaped = [len(re.findall(r"(?<!\\)\|", line)) for line in rows]
    assert unescaped == [3, 3, 3, 3], rows
    assert "mine \\| v2" in rows[2]


# ------------------------------------------------------------------ registration QC
def test_qc_flags_a_registration_far_below_the_dataset(tmp_path: Path, capsys) -> None:
    """A sheared T2 affine: the rigid step improved the similarity (so no per-subject flag),
    but its gradient NCC (0.28) is far below the other subjects' (0.74)."""
    import json

    from conftest import qc_record

    from mrbench.datasets.ixi import qc_table

    nccs = {"s0": 0.74, "s1": 0.72, "s2": 0.76, "s3": 0.28, "s4": 0.73}
    files = []
    for subject, ncc in nccs.items():
        q = qc_record(subject, 1400, (1.10, 1.20), (0.15, ncc))
        files.append(tmp_path / f"{subject}.json")
        files[-1].write_text(json.dumps(q))
    df = qc_table(files, tmp_path / "qc.tsv").set_index("subject")
    flag = df.loc["s3", "flag"]
    assert "gradient NCC 0.28" in flag and "median 0.73" in flag and "far below" in flag
    assert (df.drop(index="s3")["flag"] == "ok").all()
    assert "QC s3" in capsys.readouterr().out
    # two subjects are no dataset to compare with
    assert (qc_table(files[2:4], tmp_path / "qc2.tsv")["flag"] == "ok").all()


def test_unnormalised_subject_volume_is_refused_by_the_store(tmp_path):
    """A dataset plugin that writes raw or slightly out-of-range volumes would give models inputs
    outside [-1, 1], which every plugin's output check then blames on the method."""
    from mrbench.io import save_volume
    from mrbench.slices import SubjectVolumes, build_split

    folder = tmp_path / "subjects" / "s0"
    mask = np.zeros((12, 12, 6), np.uint8)
    mask[2:10, 2:10, :] = 1
    affine = np.eye(4)
    save_volume(mask * 0.5, affine, folder / "t1.nii.gz")
    save_volume(mask * 1.02, affine, folder / "t2.nii.gz")
    save_volume(mask, affine, folder / "mask.nii.gz")
    out = tmp_path / "slices" / "train"
    with pytest.raises(InputError, match=r"t2\.nii\.gz: intensities in \[0, 1\.02\]"):
        build_split([SubjectVolumes.in_dir("s0", folder)], out, size=8, slices_per_subject=2)
    assert not out.exists() and not list(out.parent.glob(".train.tmp*"))
