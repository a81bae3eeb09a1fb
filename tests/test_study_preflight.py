"""lskd_plugins.study.preflight: the study's inputs, model names, class folders and data-bin splits
checked before any training (issue 20, classes 1 and 4)."""

import shutil
from pathlib import Path

import pytest

from lskd_plugins.errors import LskdError
from lskd_plugins.study import preflight as P

SECTIONS = {"image": "digits", "translation": "synth"}


def _cfg(out, image=None, translation=None):
    return {"output": str(out), "image": image, "translation": translation}


def _image(data="digits", **extra):
    return {
        "data": data,
        "prepare": None,
        "teacher_init": {},
        "common": {},
        "teacher": {},
        "student": {},
        **extra,
    }


def test_study_inputs_name_what_runs_read_and_what_the_study_recreates(tmp_path):
    cfg = _cfg(
        tmp_path / "out",
        image=_image(
            "{output}/data/cifar",
            prepare={
                "inputs": ["/raw/cifar.zip"],
                "command": ["python", "prep.py", "--source", "/raw/cifar.zip", "--output", "{data}"],
            },
            teacher_init={"0": "/teachers/a0.pth", "0.1": "{output}/../t.pth"},
            student={"teacher-checkpoint": "/t/x.pth", "lr": 0.1, "amp": True},
        ),
        translation=_image(
            "{output}/data/mt/data-bin",
            prepare={
                "command": ["lskd", "prepare-mt", "--raw-dir", "/raw/mt", "--output", "{output}/data/mt"]
            },
            common={"teacher-path": "/a.pt:/b.pt", "restore-file": "/r.pt"},
        ),
    )
    inputs, own = P.study_inputs(cfg, SECTIONS)
    out = str(tmp_path / "out")
    assert inputs == [
        "/raw/cifar.zip",
        "/raw/cifar.zip",
        "/teachers/a0.pth",
        f"{out}/../t.pth",
        "/t/x.pth",
        "/raw/mt",
        "/a.pt",
        "/b.pt",
        "/r.pt",
    ]
    assert own == [f"{out}/data/cifar", f"{out}/data/cifar", f"{out}/data/mt/data-bin", f"{out}/data/mt"]
    embedded = _cfg(tmp_path / "o2", image=_image(), translation=_image("synth"))
    assert P.study_inputs(embedded, SECTIONS) == (
        [],
        [str(tmp_path / "o2/data/digits"), str(tmp_path / "o2/data/synth")],
    )


def test_an_output_over_an_input_is_refused_and_its_own_data_is_not(tmp_path):
    data = tmp_path / "images"
    (data / "train" / "0").mkdir(parents=True)
    for out in (data, tmp_path, data / "train" / "0"):
        with pytest.raises(LskdError, match="would write over the input"):
            P.refuse_inputs_in_output(_cfg(out, image=_image(str(data))), SECTIONS)
    P.refuse_inputs_in_output(_cfg(tmp_path / "study", image=_image(str(data))), SECTIONS)
    prepared = _image(
        "{output}/data/x", prepare={"inputs": [str(data)], "command": ["p", "--output", "{data}"]}
    )
    P.refuse_inputs_in_output(_cfg(tmp_path / "study", image=prepared), SECTIONS)
    with pytest.raises(LskdError, match=r"input .*images \(the input lies inside --output\)"):
        P.refuse_inputs_in_output(_cfg(tmp_path, image=prepared), SECTIONS)
    ckpt = tmp_path / "old_study" / "runs" / "t.pth"  # teacher_init from another study
    with pytest.raises(LskdError, match="t.pth"):
        P.refuse_inputs_in_output(
            _cfg(tmp_path / "old_study", image=_image(teacher_init={"0": str(ckpt)})), SECTIONS
        )


def test_model_names():
    for name in (
        "resnet18",
        "resnet18.a1_in1k",
        "test_resnet",
        "hf-hub:timm/resnet18.a1_in1k",
        "local-dir:/m",
    ):
        P.check_model_name(name, "image.teacher_model")
    with pytest.raises(LskdError) as err:
        P.check_model_name("resnet181", "image.student_model")
    assert str(err.value).startswith(
        "lskd: error: image.student_model: 'resnet181' is not a timm model; the closest is 'resnet18'"
    )


def _classes(root: Path, train, val):
    for split, names in (("train", train), ("val", val)):
        for n in names:
            (root / split / n).mkdir(parents=True)
    return root


def test_class_folders_of_train_and_val(tmp_path):
    P.check_image_classes(_classes(tmp_path / "a", ["0", "1", ".ipynb_checkpoints"], ["0", "1"]))
    with pytest.raises(LskdError, match=r"only in train/: 2; only in val/: 3\); every class needs"):
        P.check_image_classes(_classes(tmp_path / "b", ["0", "1", "2"], ["0", "1", "3"]))
    with pytest.raises(LskdError, match="only in val/: 1"):
        P.check_image_classes(_classes(tmp_path / "c", ["0"], ["0", "1"]))
    with pytest.raises(LskdError, match="holds no class folders"):
        P.check_image_classes(_classes(tmp_path / "d", [".hidden"], ["0"]))


def test_data_bin_splits(tiny_mt_data, tmp_path):
    data = Path(shutil.copytree(tiny_mt_data.data_bin, tmp_path / "bin"))
    assert P.check_data_bin_splits(data) == ["train", "valid", "test"]
    (data / "test_sets.tsv").write_text("test\tflickr\ntest1\tmscoco\n")
    with pytest.raises(LskdError, match=r"lacks the test1 split the study needs \(test1.en-de.en.bin"):
        P.check_data_bin_splits(data)
    (data / "test_sets.tsv").unlink()
    (data / "valid.en-de.de.idx").unlink()
    with pytest.raises(LskdError, match=r"lacks the valid split .*valid.en-de.de.idx missing"):
        P.check_data_bin_splits(data)
    for f in data.glob("train.*"):
        f.unlink()
    with pytest.raises(LskdError, match="has no train split"):
        P.check_data_bin_splits(data)
