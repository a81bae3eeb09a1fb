"""`lskd diffusion image` end to end on a tiny ImageFolder and two tiny lskd image checkpoints."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.diffusion import analyse_image_checkpoints, write_outputs

torch.set_num_threads(1)
CLASSES = ["airplane", "cat", "dog", "frog"]
DATA_CONFIG = {
    "input_size": (3, 32, 32),
    "mean": (0.5, 0.5, 0.5),
    "std": (0.25, 0.25, 0.25),
    "interpolation": "bilinear",
    "crop_pct": 1.0,
    "crop_mode": "center",
}


@pytest.fixture(scope="module")
def image_setup(tmp_path_factory):
    return make_image_setup(tmp_path_factory.mktemp("diffusion_images"))


def make_image_setup(root):
    """A 4-class ImageFolder (6 train, 4 val images a class) and two tiny lskd image checkpoints."""
    import timm
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 4)):
        for ci, name in enumerate(CLASSES):
            d = root / "data" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                base = np.zeros((32, 32, 3))
                base[..., ci % 3] = 100 + 40 * ci
                img = np.clip(base + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    ckpts = []
    for seed, (model_name, label) in enumerate(
        (("test_resnet", "teacher alpha=0.0"), ("test_efficientnet", "student T=3 from LS teacher"))
    ):
        torch.manual_seed(seed)
        model = timm.create_model(model_name, num_classes=len(CLASSES))
        path = root / f"{model_name}.pth"
        torch.save(
            {
                "format": "lskd-image-v1",
                "model_name": model_name,
                "num_classes": len(CLASSES),
                "class_names": CLASSES,
                "state_dict": model.state_dict(),
                "data_config": DATA_CONFIG,
                "label": label,
                "args": {"smoothing": 0.0},
                "epoch": 1,
            },
            path,
        )
        ckpts.append(path)
    return root / "data", ckpts


def direct_valid_numbers(ckpt, data, names):
    """Accuracy and mean p(b|a) over ALL val images of the three classes, computed without the library."""
    import timm.data
    from PIL import Image

    from lskd_plugins.image.checkpoint import load_model

    model, meta = load_model(ckpt)
    tf = timm.data.create_transform(**meta["data_config"], is_training=False)
    ids = [CLASSES.index(n) for n in names]
    correct, total, pba = 0, 0, []
    for k, cid in enumerate(ids):
        for f in sorted((data / "val" / names[k]).iterdir()):
            with torch.no_grad():
                p = torch.softmax(model(tf(Image.open(f).convert("RGB"))[None]), -1)[0]
            correct += int(p.argmax() == cid)
            total += 1
            if k == 0:
                pba.append(float(p[ids[1]]))
    return correct / total, float(np.mean(pba))


def test_cli_writes_json_markdown_and_png(image_setup, tmp_path, capsys):
    data, ckpts = image_setup
    out = tmp_path / "out"
    rc = lskd_main(
        [
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
            "--per-class",
            "10",
            "--batch-size",
            "5",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    doc = json.loads((out / "diffusion.json").read_text())
    assert doc["classes"]["a"] == "cat" and doc["classes"]["ids"] == [1, 2, 0]
    assert doc["selection"]["method"] == "names"
    labels = [r["label"] for r in doc["records"]]
    assert labels == ["teacher alpha=0.0", "student T=3 from LS teacher"]
    for rec, ckpt in zip(doc["records"], ckpts):
        assert rec["train"]["n"] == {"a": 6, "b": 6, "c": 6}
        assert rec["valid"]["n"] == {"a": 4, "b": 4, "c": 4}
        for split in ("train", "valid"):
            for key in ("eta", "fisher_ab", "leakage_ab", "d_ab", "d_ac", "p_b_given_a", "p_c_given_a"):
                assert isinstance(rec[split][key], float), (split, key)
        acc, pba = direct_valid_numbers(ckpt, data, ["cat", "dog", "airplane"])
        assert rec["valid"]["accuracy"] == pytest.approx(acc)
        assert rec["valid"]["p_b_given_a"] == pytest.approx(pba, rel=1e-4)
    md = (out / "diffusion.md").read_text()
    assert "a = **cat**, b = **dog**" in md
    assert md.count("| teacher alpha=0.0 | ") == 2 and md.count("| student T=3 from LS teacher | ") == 2
    assert "p(b\\|a)" in md
    from matplotlib.image import imread

    for name in ("projection.png", "projection_plane.png", "numbers.png"):
        img = imread(out / name)
        assert img.ndim == 3 and img.shape[0] > 300 and 500 < img.shape[1] <= 2000
        assert img[..., :3].std() > 0.05
        colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert len(colours) > 50
        # the class colours (blue, orange, green) are drawn
        for rgb in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C)):
            assert np.any(np.all(np.abs(colours.astype(int) - rgb) <= 3, axis=1)), rgb
    printed = capsys.readouterr().out.split()
    assert str(out / "diffusion.json") in printed


def test_library_chooses_classes_automatically(image_setup, tmp_path):
    data, ckpts = image_setup
    records, projections = analyse_image_checkpoints(
        [ckpts[0]], data, per_class=3, device="cpu", progress=False, log=lambda msg: None
    )
    sel = records[0]["selection"]
    assert sel["method"] == "auto" and "most confused" in sel["reason"]
    assert len(set(sel["names"])) == 3 and set(sel["names"]) <= set(CLASSES)
    # a and b are the pair with the largest symmetrised mean probability under the reference model
    s = sel["scores"]
    assert s["p_b_given_a"] >= s["p_a_given_b"]
    assert projections[0].splits["train"].paper_xy.shape == (9, 2)
    paths = write_outputs(records, projections, tmp_path / "auto")
    assert all(p.is_file() for p in paths.values())


def test_unknown_class_is_a_one_line_error(image_setup, tmp_path, cli_env):
    data, ckpts = image_setup
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lskd_plugins.cli",
            "diffusion",
            "image",
            "--checkpoints",
            str(ckpts[0]),
            "--data",
            str(data),
            "--output",
            str(tmp_path / "x"),
            "--classes",
            "cat,zebra,dog",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=cli_env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip().splitlines()[-1]
        == "lskd: error: unknown class zebra; known: airplane, cat, dog, frog"
    )
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x").exists()  # a failed run leaves no folder (nor its ownership marker)


def test_missing_validation_folder_is_a_user_error(image_setup, tmp_path):
    from lskd_plugins.errors import LskdError

    _, ckpts = image_setup
    (tmp_path / "train").mkdir()
    with pytest.raises(LskdError, match="no val/ folder"):
        analyse_image_checkpoints(ckpts, tmp_path, classes="cat,dog,airplane", device="cpu", progress=False)
