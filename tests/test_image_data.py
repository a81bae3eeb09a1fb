"""Data preparation: lskd digits, data_prep/prepare_cifar.py, data_prep/prepare_cub.py, transforms."""

import importlib.util
import io
import pickle
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.errors import LskdError, LskdFailure
from lskd_plugins.image import data as image_data
from lskd_plugins.image.digits import write_digits

REPO = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "data_prep" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_cifar = load_script("prepare_cifar")
prepare_cub = load_script("prepare_cub")


def files_under(root: Path):
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
    )


# ----------------------------------------------------------------------------- digits
def test_digits_image_folder(tmp_path):
    assert lskd_main(["digits", "--out", str(tmp_path / "d")]) == 0
    root = tmp_path / "d"
    assert image_data.class_names(root / "train") == [str(i) for i in range(10)]
    train, val = files_under(root / "train"), files_under(root / "val")
    assert len(train) == 1437 and len(val) == 360
    assert not set(Path(f).name for f in train) & set(Path(f).name for f in val)  # disjoint images
    per_class = [len(list((root / "val" / str(c)).iterdir())) for c in range(10)]
    assert min(per_class) >= 34 and max(per_class) <= 38  # stratified 20%
    img = Image.open(root / "train" / train[0])
    assert img.size == (8, 8) and img.mode == "RGB"
    # Pixels are sklearn's 0..16 scaled to 0..255.
    from sklearn.datasets import load_digits

    idx = int(Path(train[0]).stem)
    expected = np.round(load_digits().images[idx] * 255 / 16).astype(np.uint8)
    assert np.array_equal(np.asarray(img)[:, :, 0], expected)
    # Deterministic and idempotent; another seed gives another split.
    write_digits(tmp_path / "again")
    assert files_under(tmp_path / "again") == files_under(root)
    assert write_digits(root) == {"train": 1437, "val": 360}
    write_digits(tmp_path / "other", seed=1)
    assert files_under(tmp_path / "other") != files_under(root)


def test_digits_upscaled_and_errors(tmp_path):
    write_digits(tmp_path / "big", scale=4)
    assert Image.open(next((tmp_path / "big" / "val" / "3").iterdir())).size == (32, 32)
    with pytest.raises(LskdError, match="prepared with other settings"):
        write_digits(tmp_path / "big", scale=1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(LskdError, match="exists and is not empty"):
        write_digits(tmp_path / "full")


# ----------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("aug", image_data.AUG_PRESETS)
def test_transforms_give_model_sized_tensors(aug):
    from timm.data import resolve_data_config

    cfg = resolve_data_config(
        {"input_size": (3, 32, 32), "crop_pct": 1.0}, pretrained_cfg={"mean": (0.5,) * 3, "std": (0.5,) * 3}
    )
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    for training in (False, True):
        x = image_data.build_transform(cfg, aug, training)(img)
        assert isinstance(x, torch.Tensor) and tuple(x.shape) == (3, 32, 32)
    if aug == "cub":
        names = [type(t).__name__ for t in image_data.build_transform(cfg, aug, True).transforms]
        assert "RandomRotation" in names and "RandomGrayscale" in names and "ColorJitter" in names
    # Evaluation is deterministic and normalised with the config's mean/std.
    flat = Image.new("RGB", (8, 8), (255, 255, 255))
    assert torch.allclose(image_data.build_transform(cfg, aug, False)(flat), torch.ones(3, 32, 32))


def test_data_folder_errors(tmp_path):
    with pytest.raises(LskdError, match="no such directory"):
        image_data.split_dir(tmp_path / "missing", "train")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(LskdError, match="afile is a file, not a folder"):
        image_data.split_dir(tmp_path / "afile", "train")
    (tmp_path / "d" / "val").mkdir(parents=True)
    with pytest.raises(LskdError, match=r"has no train/ folder"):
        image_data.split_dir(tmp_path / "d", "train")
    (tmp_path / "d" / "train" / "a").mkdir(parents=True)
    with pytest.raises(LskdError, match="class folder .*a holds no image"):
        image_data.image_folder(tmp_path / "d" / "train", None)


# ----------------------------------------------------------------------------- CIFAR
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_cifar10_tarball(path: Path, per_batch=12, seed=0):
    """The python tarball's exact structure: pickled dicts with bytes keys, data (N, 3072) uint8."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        labels = [i % 10 for i in range(per_batch)]
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        batches[name] = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
    batches["batches.meta"] = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_vis": 3072}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in batches.items():
            blob = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return batches


def test_cifar_python_tarball(tmp_path):
    batches = fake_cifar10_tarball(tmp_path / "cifar-10-python.tar.gz")
    counts = prepare_cifar.prepare(tmp_path / "cifar-10-python.tar.gz", tmp_path / "out")
    assert counts == {"train": 24, "val": 12}
    assert image_data.class_names(tmp_path / "out" / "train") == sorted(CIFAR_NAMES)
    # Image 3 of data_batch_1 has label 3 (cat) and is the first cat image: exact pixels.
    first_cat = np.asarray(Image.open(tmp_path / "out" / "train" / "cat" / "00003.png"))
    assert np.array_equal(
        first_cat, batches["data_batch_1"][b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0)
    )
    # The second cat is data_batch_2's index 3: files are numbered across the split (12 + 3).
    second = np.asarray(Image.open(tmp_path / "out" / "train" / "cat" / "00015.png"))
    assert np.array_equal(second, batches["data_batch_2"][b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar_subset_and_zip_layout(tmp_path):
    rng = np.random.default_rng(1)
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as zf:
        for split, n in (("train", 6), ("test", 3)):
            for cls in ("cat", "dog", "ship"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
                    zf.writestr(f"cifar10/{split}/{cls}/{i:04d}.jpg", buf.getvalue())
    out = tmp_path / "out"
    counts = prepare_cifar.prepare(tmp_path / "c.zip", out, classes="dog,cat", per_class=4, val_per_class=2)
    assert counts == {"train": 8, "val": 4}
    assert files_under(out) == sorted(
        [f"train/{c}/{i:04d}.jpg" for c in ("cat", "dog") for i in range(4)]
        + [f"val/{c}/{i:04d}.jpg" for c in ("cat", "dog") for i in range(2)]
    )
    with zipfile.ZipFile(tmp_path / "c.zip") as zf:  # bytes copied unchanged
        assert (out / "train/dog/0002.jpg").read_bytes() == zf.read("cifar10/train/dog/0002.jpg")
    # Same settings again: a no-op; other settings: an error.
    assert (
        prepare_cifar.prepare(tmp_path / "c.zip", out, classes="dog,cat", per_class=4, val_per_class=2)
        == counts
    )
    with pytest.raises(LskdError, match="prepared with other settings"):
        prepare_cifar.prepare(tmp_path / "c.zip", out, classes="dog,ship")
    with pytest.raises(LskdError, match="unknown horse; available: cat, dog, ship"):
        prepare_cifar.prepare(tmp_path / "c.zip", tmp_path / "o2", classes="cat,horse")


def test_cifar_bad_sources(tmp_path):
    with pytest.raises(LskdError, match="no such file or directory"):
        prepare_cifar.prepare(tmp_path / "nope.tar.gz", tmp_path / "o")
    (tmp_path / "junk.bin").write_bytes(b"not an archive at all")
    with pytest.raises(LskdError, match="neither a zip of class folders nor a CIFAR python tarball"):
        prepare_cifar.prepare(tmp_path / "junk.bin", tmp_path / "o")
    with zipfile.ZipFile(tmp_path / "notest.zip", "w") as zf:
        zf.writestr("x/train/cat/0.jpg", b"123")
    with pytest.raises(LskdError, match=r"expected entries <prefix>/train/<class>/<image>"):
        prepare_cifar.prepare(tmp_path / "notest.zip", tmp_path / "o")
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("something/else.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(LskdError, match="no cifar-10-batches-py/ or cifar-100-python/ folder inside"):
        prepare_cifar.prepare(tmp_path / "other.tar.gz", tmp_path / "o")


def test_cifar_script_prints_one_line_error(tmp_path, cli_env):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "data_prep" / "prepare_cifar.py"),
            "--source",
            str(tmp_path / "x.zip"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=cli_env,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"lskd: error: --source {tmp_path / 'x.zip'}: no such file or directory"


def test_cifar_real_zip_three_classes(shared_data, tmp_path):
    source = shared_data / "cifar10" / "cifar10-jpeg.zip"
    if not source.is_file():
        pytest.skip(f"{source} absent")
    counts = prepare_cifar.prepare(
        source, tmp_path / "c3", classes="cat,dog,airplane", per_class=5, val_per_class=3
    )
    assert counts == {"train": 15, "val": 9}
    img = Image.open(tmp_path / "c3" / "train" / "cat" / "0000.jpg")
    assert img.size == (32, 32)


# ----------------------------------------------------------------------------- CUB
def fake_cub(root: Path, classes=3, per_class=4):
    """A CUB_200_2011 tree in the official layout: every other image of a class is a training one."""
    cub = root / "CUB_200_2011"
    images, split = [], []
    k = 0
    for c in range(1, classes + 1):
        cls = f"{c:03d}.Bird_{c}"
        (cub / "images" / cls).mkdir(parents=True)
        for i in range(per_class):
            k += 1
            rel = f"{cls}/Bird_{c}_{i:04d}.jpg"
            Image.new("RGB", (6, 5), (c * 40, i * 30, 7)).save(cub / "images" / rel)
            images.append(f"{k} {rel}")
            split.append(f"{k} {1 if i % 2 == 0 else 0}")
    (cub / "images.txt").write_text("\n".join(images) + "\n")
    (cub / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (cub / "classes.txt").write_text("\n".join(f"{c} {c:03d}.Bird_{c}" for c in range(1, classes + 1)) + "\n")
    return cub


def test_cub_from_folder_and_tarball(tmp_path):
    cub = fake_cub(tmp_path / "src")
    counts = prepare_cub.prepare(tmp_path / "src", tmp_path / "a")
    assert counts == {"train": 6, "val": 6}
    assert image_data.class_names(tmp_path / "a" / "train") == ["001.Bird_1", "002.Bird_2", "003.Bird_3"]
    assert (tmp_path / "a/train/002.Bird_2/Bird_2_0002.jpg").is_file()
    assert (tmp_path / "a/val/002.Bird_2/Bird_2_0001.jpg").is_file()
    with tarfile.open(tmp_path / "CUB_200_2011.tgz", "w:gz") as tar:
        tar.add(cub, arcname="CUB_200_2011")
    assert prepare_cub.prepare(tmp_path / "CUB_200_2011.tgz", tmp_path / "b") == counts
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b")
    a = tmp_path / "a/val/003.Bird_3/Bird_3_0003.jpg"
    assert a.read_bytes() == (tmp_path / "b/val/003.Bird_3/Bird_3_0003.jpg").read_bytes()
    assert prepare_cub.prepare(cub, tmp_path / "c", max_classes=2) == {"train": 4, "val": 4}
    prepare_cub.prepare(cub, tmp_path / "l", link=True)
    assert (tmp_path / "l/train/001.Bird_1/Bird_1_0000.jpg").is_symlink()


def test_cub_errors(tmp_path):
    cub = fake_cub(tmp_path / "src")
    (cub / "train_test_split.txt").unlink()
    with pytest.raises(LskdError, match="not a CUB_200_2011 folder \\(missing train_test_split.txt\\)"):
        prepare_cub.prepare(tmp_path / "src", tmp_path / "o")
    cub = fake_cub(tmp_path / "src2")
    (cub / "images" / "001.Bird_1" / "Bird_1_0002.jpg").unlink()
    with pytest.raises(LskdError, match="1 listed images are missing \\(e.g. 001.Bird_1/Bird_1_0002.jpg\\)"):
        prepare_cub.prepare(cub, tmp_path / "o2")
    cub = fake_cub(tmp_path / "src3")
    (cub / "train_test_split.txt").write_text("1 1\nbroken\n")
    with pytest.raises(LskdError, match="train_test_split.txt, line 2: expected '<id> <value>'"):
        prepare_cub.prepare(cub, tmp_path / "o3")
    with pytest.raises(LskdError, match="no such file or directory"):
        prepare_cub.prepare(tmp_path / "absent.tgz", tmp_path / "o4")
    with tarfile.open(tmp_path / "empty.tgz", "w:gz") as tar:
        info = tarfile.TarInfo("README")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(LskdError, match="no CUB_200_2011 images.txt, train_test_split.txt inside"):
        prepare_cub.prepare(tmp_path / "empty.tgz", tmp_path / "o5")


# ----------------------------------------------------------------------------- damaged archives
def small_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for split in ("train", "test"):
            for cls in ("cat", "dog"):
                for i in range(2):
                    zf.writestr(f"c/{split}/{cls}/{i}.png", bytes(range(256)) * 8)
    return path


def corrupt_member(path: Path, name: str) -> None:
    """Flip bytes inside one member's compressed data (its CRC no longer matches)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for k in range(start + 2, start + 12):
        raw[k] ^= 0x55
    path.write_bytes(bytes(raw))


def run_cifar_script(source: Path, out: Path, cli_env):
    script = [sys.executable, str(REPO / "data_prep" / "prepare_cifar.py")]
    return subprocess.run(
        [*script, "--source", str(source), "--out", str(out)], capture_output=True, text=True, env=cli_env
    )


def test_cifar_zip_with_a_corrupt_member_names_it(tmp_path, cli_env):
    source = small_zip(tmp_path / "c.zip")
    corrupt_member(source, "c/train/dog/1.png")
    proc = run_cifar_script(source, tmp_path / "out", cli_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"lskd: error: {source} is damaged: cannot read member c/train/dog/1.png ("
    ), proc.stderr
    assert lines[0].endswith("download or copy the archive again")
    assert not (tmp_path / "out").exists()  # the staged half is not published


def test_truncated_archives_are_one_line_failures(tmp_path, cli_env):
    source = small_zip(tmp_path / "c.zip")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    proc = run_cifar_script(cut, tmp_path / "o1", cli_env)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        f"lskd: error: {cut} is damaged: cannot read its table of contents (File is not a zip file); "
        "download or copy the archive again"
    ]
    fake_cifar10_tarball(tmp_path / "c.tar.gz", per_batch=300)
    blob = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(
        LskdFailure, match=r"cut.tar.gz is damaged: cannot read member .*cifar-10-batches-py/"
    ):
        prepare_cifar.prepare(tmp_path / "cut.tar.gz", tmp_path / "o2")
    assert not (tmp_path / "o2").exists()


def test_truncated_cub_tarball_is_a_one_line_failure(tmp_path):
    cub = fake_cub(tmp_path / "src", classes=3, per_class=20)
    with tarfile.open(tmp_path / "cub.tgz", "w:gz") as tar:
        tar.add(cub, arcname="CUB_200_2011")
    blob = (tmp_path / "cub.tgz").read_bytes()
    (tmp_path / "cut.tgz").write_bytes(blob[: len(blob) * 3 // 4])
    with pytest.raises(LskdFailure, match=r"cut.tgz is damaged: cannot read member"):
        prepare_cub.prepare(tmp_path / "cut.tgz", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_shell_unpack_of_a_truncated_tarball_names_the_member(tmp_path):
    """data_prep/common.sh's unpack (the translation corpora's tarballs): one line, exit 1."""
    src = tmp_path / "src" / "d"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        (src / f"f{i}").write_bytes(rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    with tarfile.open(tmp_path / "a.tgz", "w:gz") as tar:
        for i in range(3):
            tar.add(src / f"f{i}", arcname=f"d/f{i}")
    blob = (tmp_path / "a.tgz").read_bytes()
    (tmp_path / "cut.tgz").write_bytes(blob[: len(blob) // 2])  # inside d/f1
    (tmp_path / "out").mkdir()
    script = f"source {REPO / 'data_prep' / 'common.sh'}; unpack cut.tgz out d/f2"
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "lskd: error: bash: cut.tgz is damaged: cannot read member d/f1 "
        "(gzip: stdin: unexpected end of file); delete it to download again"
    ]


def test_a_cut_on_a_member_header_is_not_read_as_a_whole_archive(tmp_path):
    """tarfile ends quietly when a gzip tarball is cut where a member header begins; tar_members
    checks the gzip stream's own end, so every cut is a damaged archive, none a shorter one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for i in range(20):
            rng = np.random.default_rng(i)
            data = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes() if i % 2 else b"a" * 2000
            info = tarfile.TarInfo(f"cifar-10-batches-py/f{i}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    cut = tmp_path / "cut.tgz"
    assert len(prepare_cifar.tar_files(cut.write_bytes(blob) and cut)[0]) == 20  # whole: every member
    for end in range(200, len(blob) - 8, 53):
        cut.write_bytes(blob[:end])
        with pytest.raises(LskdFailure, match="cut.tgz is damaged"):
            prepare_cifar.tar_files(cut)
