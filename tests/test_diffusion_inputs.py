"""`lskd diffusion` defends its inputs and outputs (issue 11): one test per defect class.

1. outputs that would destroy earlier results or inputs; 2. silently wrong results (labels, a
dictionary in another order, a class list that is not the data's); 3. user mistakes that gave
tracebacks (corrupt images, truncated checkpoints, numbers out of range); 4. work lost at the end
(an unwritable output is found before any model is loaded); 6. unclear messages (the wrong kind
of checkpoint says what was found and what was expected).
"""

import json
import shutil

import pytest
import torch
from cli_helpers import assert_fails_one_line
from test_diffusion_cli import make_image_setup

from lskd_plugins.cli import main as lskd_main

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def image_setup(tmp_path_factory):
    return make_image_setup(tmp_path_factory.mktemp("diffusion_inputs"))


QUICK = ["--per-class", "4", "--device", "cpu", "--no-progress"]


def image_args(ckpts, data, out, *extra):
    return [
        "diffusion",
        "image",
        "--checkpoints",
        *map(str, ckpts),
        "--data",
        str(data),
        "--output",
        str(out),
        "--classes",
        "cat,dog,airplane",
        *QUICK,
        *extra,
    ]


# ------------------------------------------------------------------ 1. outputs that destroy work
def test_output_holding_other_results_or_inside_an_input_is_refused(image_setup, tmp_path, capsys):
    data, ckpts = image_setup
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("someone's results")
    assert_fails_one_line(
        image_args(ckpts, data, other), capsys, unchanged=[other], must_contain=["--output", "--overwrite"]
    )
    assert_fails_one_line(
        image_args(ckpts, data, data / "val"),
        capsys,
        unchanged=[data],
        must_contain=["would write over the input"],
    )
    # --overwrite replaces them; a rerun of the same command reuses its own folder
    assert lskd_main(image_args(ckpts, data, other, "--overwrite")) == 0
    assert not (other / "mine.txt").exists() and (other / "diffusion.json").is_file()
    assert lskd_main(image_args(ckpts, data, other)) == 0


# ------------------------------------------------------------------ 2. silently wrong results
@pytest.fixture(scope="module")
def nmt_variants(tiny_mt_data, tiny_teacher, tmp_path_factory):
    """A no-KD student (lskd_kd --kd-alpha 0, as recipes/demo.sh), a KD student at T=3 of the tiny
    LS teacher, and a data-bin whose dictionaries hold the same symbols in another order."""
    root = tmp_path_factory.mktemp("diffusion_variants")
    state = torch.load(tiny_teacher, map_location="cpu", weights_only=False)
    crit = {"_name": "lskd_kd", "label_smoothing": 0.1, "kd_alpha": 0.0, "kd_temperature": 1.0}
    paths = {}
    for name, kd_alpha, teacher in (("nokd", 0.0, ""), ("kd", 0.9, str(tiny_teacher))):
        s = dict(state, cfg=dict(state["cfg"]))
        s["cfg"]["criterion"] = dict(crit, kd_alpha=kd_alpha, kd_temperature=3.0)
        s["cfg"]["task"] = dict(state["cfg"]["task"], _name="lskd_translation", teacher_path=teacher)
        paths[name] = root / f"{name}.pt"
        torch.save(s, paths[name])
    shuffled = root / "shuffled"
    shutil.copytree(tiny_mt_data.data_bin, shuffled)
    for f in shuffled.glob("dict.*.txt"):
        lines = f.read_text().splitlines()
        lines[10], lines[11] = lines[11], lines[10]
        f.write_text("\n".join(lines) + "\n")
    paths["shuffled"] = shuffled
    paths["swapped"] = (lines[11].split()[0], lines[10].split()[0])
    return paths


def nmt_args(ckpts, data, out, *extra):
    return [
        "diffusion",
        "nmt",
        "--checkpoints",
        *map(str, ckpts),
        "--data",
        str(data),
        "--output",
        str(out),
        "--tokens",
        "mann,herr,apfel",
        "--max-sentences",
        "30",
        "--per-token",
        "8",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def test_runs_are_labelled_from_their_checkpoint(tiny_mt_data, tiny_teacher, nmt_variants, tmp_path):
    out = tmp_path / "labels"
    ckpts = [tiny_teacher, nmt_variants["kd"], nmt_variants["nokd"]]
    assert lskd_main(nmt_args(ckpts, tiny_mt_data.data_bin, out)) == 0
    labels = [r["label"] for r in json.loads((out / "diffusion.json").read_text())["records"]]
    assert labels == [
        "teacher alpha=0.1",
        "KD student T=3 kd_alpha=0.9 eps=0.1 from teacher alpha=0.1",
        "no-KD student eps=0.1",
    ]


def test_a_data_bin_with_another_symbol_order_is_refused(
    tiny_mt_data, tiny_teacher, nmt_variants, tmp_path, capsys
):
    first, second = nmt_variants["swapped"]
    line = assert_fails_one_line(
        nmt_args([tiny_teacher], nmt_variants["shuffled"], tmp_path / "o"),
        capsys,
        must_contain=["dictionar", "first difference at index"],
    )
    assert repr(first) in line and repr(second) in line


def test_a_class_folder_list_that_is_not_the_models_is_refused(image_setup, tmp_path, capsys):
    data, ckpts = image_setup
    other = tmp_path / "data"
    shutil.copytree(data, other)
    for split in ("train", "val"):
        (other / split / "frog").rename(other / split / "horse")
    assert_fails_one_line(
        image_args(ckpts[:1], other, tmp_path / "o"),
        capsys,
        must_contain=["first difference at index 3", "'frog'", "'horse'"],
    )


# ------------------------------------------------------------------ 3. tracebacks for mistakes
def test_corrupt_images_are_skipped_and_counted(image_setup, tmp_path, capsys):
    data, ckpts = image_setup
    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    (bad / "train" / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    png = (data / "val" / "dog" / "0.png").read_bytes()
    (bad / "val" / "dog" / "cut.png").write_bytes(png[: len(png) // 2])
    out = tmp_path / "o"
    assert lskd_main(image_args(ckpts[:1], bad, out, "--per-class", "20")) == 0
    rec = json.loads((out / "diffusion.json").read_text())["records"][0]
    assert rec["skipped_images"] == {"train": 1, "valid": 1}
    assert rec["train"]["n"]["a"] == 6 and rec["valid"]["n"]["b"] == 4  # the readable ones only
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err and "bad.jpg" in err and "Traceback" not in err
    # --bad-images error refuses them instead (image-train's and image-eval's policy option)
    assert_fails_one_line(
        image_args(ckpts[:1], bad, tmp_path / "e", "--per-class", "20", "--bad-images", "error"),
        capsys,
        must_contain=["cannot read image", "--bad-images skip"],
    )


def test_truncated_checkpoints_are_one_line(image_setup, tiny_mt_data, tiny_teacher, tmp_path, capsys):
    data, ckpts = image_setup
    for good, argv in ((ckpts[0], image_args), (tiny_teacher, nmt_args)):
        cut = tmp_path / f"cut{good.suffix}"
        cut.write_bytes(good.read_bytes()[:5000])
        where = data if argv is image_args else tiny_mt_data.data_bin
        assert_fails_one_line(
            argv([cut], where, tmp_path / "o"),
            capsys,
            must_contain=[str(cut), "is not a readable PyTorch file (truncated or corrupt?"],
        )


def test_a_truncated_data_bin_index_is_one_line(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    data = tmp_path / "data-bin"
    shutil.copytree(tiny_mt_data.data_bin, data)
    idx = data / "valid.en-de.de.idx"
    idx.write_bytes(idx.read_bytes()[:-20])
    assert_fails_one_line(
        nmt_args([tiny_teacher], data, tmp_path / "o"),
        capsys,
        must_contain=["valid.en-de.de.idx", "truncated", "binarize the data again"],
    )


@pytest.mark.parametrize(
    "modality,option,value",
    [
        ("image", "--per-class", "1"),
        ("image", "--per-class", "nan"),
        ("image", "--select-per-class", "0"),
        ("image", "--workers", "-1"),
        ("image", "--seed", "-1"),
        ("image", "--num-classes", "0"),
        ("image", "--batch-size", "0"),
        ("nmt", "--max-sentences", "0"),
        ("nmt", "--per-token", "1"),
        ("nmt", "--candidates", "2"),
        ("nmt", "--batch-size", "-4"),
    ],
)
def test_every_number_is_range_checked_before_any_work(modality, option, value, tmp_path, capsys):
    argv = [
        "diffusion",
        modality,
        "--checkpoints",
        "none.pt",
        "--data",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
        option,
        value,
    ]
    assert_fails_one_line(argv, capsys, must_contain=[option, repr(value)])
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ 4. work lost at the end
def test_an_unwritable_output_is_refused_before_any_model_is_loaded(image_setup, tmp_path, capsys):
    data, _ = image_setup
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # the checkpoint does not exist: the output is checked first, so the error names --output
    for out in (blocker, blocker / "sub"):
        assert_fails_one_line(
            image_args([tmp_path / "missing.pth"], data, out),
            capsys,
            unchanged=[blocker],
            must_contain=["--output"],
        )


# ------------------------------------------------------------------ 6. unclear messages
def test_the_wrong_kind_of_checkpoint_says_what_it_is(
    image_setup, tiny_mt_data, tiny_teacher, tmp_path, capsys
):
    data, ckpts = image_setup
    assert_fails_one_line(
        nmt_args([ckpts[0]], tiny_mt_data.data_bin, tmp_path / "a"),
        capsys,
        must_contain=["is an lskd image checkpoint", "expects a fairseq translation checkpoint"],
    )
    assert_fails_one_line(
        image_args([tiny_teacher], data, tmp_path / "b"),
        capsys,
        must_contain=["is a fairseq checkpoint (a translation model)", "expects an image classifier"],
    )
    assert_fails_one_line(image_args([data], data, tmp_path / "c"), capsys, must_contain=["is a folder"])
    ref = ["--reference", str(tmp_path / "gone.pth")]
    argv = image_args(ckpts[:1], data, tmp_path / "d", *ref)
    argv.remove("--classes")
    argv.remove("cat,dog,airplane")
    assert_fails_one_line(argv, capsys, must_contain=["--reference", "gone.pth", "not found"])


# ------------------------------------------------------------------ timm checkpoints (issue 10)
def test_a_timm_state_dict_is_analysed_with_model_and_num_classes(image_setup, tmp_path, capsys):
    """Through image.checkpoint.load_classifier, the loader of image-train's teacher and image-eval."""
    from lskd_plugins.image.checkpoint import load_model

    data, ckpts = image_setup
    model, _ = load_model(ckpts[0])
    plain = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, plain)
    argv = image_args([plain], data, tmp_path / "o", "--model", "test_resnet", "--num-classes", "4")
    # without --model: one line naming this command's option (load_classifier's says --teacher-model)
    line = assert_fails_one_line(argv[:-4], capsys, must_contain=["does not name its model", "--model NAME"])
    assert "--teacher" not in line
    assert lskd_main(argv) == 0
    rec = json.loads((tmp_path / "o" / "diffusion.json").read_text())["records"][0]
    assert rec["model_name"] == "test_resnet" and rec["label"] == "model_best.pth"
    assert rec["valid"]["n"] == {"a": 4, "b": 4, "c": 4}  # class names: the folders' order
