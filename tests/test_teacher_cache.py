"""lskd cache-teacher and --teacher-cache: alignment, equality with the online teacher, refusals, resume."""

import json
import shutil

import numpy as np
import pytest
import torch

fairseq = pytest.importorskip("fairseq")

from cli_helpers import assert_fails_one_line  # noqa: E402
from test_criterion import build, valid_batch  # noqa: E402

from lskd_plugins.cli import main as lskd  # noqa: E402
from lskd_plugins.errors import LskdError  # noqa: E402
from lskd_plugins.nmt import teacher_cache  # noqa: E402

TOPK4 = ("--store", "topk", "--topk", 4, "--temperatures", "2,64")


def cache_argv(data_bin, teacher, out, *extra):
    return [
        "cache-teacher",
        "--data",
        str(data_bin),
        "--path",
        str(teacher),
        "--output",
        str(out),
        "--no-progress",
    ] + [str(x) for x in extra]


@pytest.fixture(scope="module")
def full_cache(tmp_path_factory, tiny_mt_data, tiny_teacher):
    """A K = V cache of the tiny teacher (V = 568: the flat tail is empty, only fp16 rounding left)."""
    out = tmp_path_factory.mktemp("cache_full")
    vocab = len(open(tiny_mt_data.data_bin / "dict.de.txt").readlines()) + 4
    vocab = 8 * ((vocab + 7) // 8)  # fairseq pads the dictionary to a multiple of 8
    argv = cache_argv(tiny_mt_data.data_bin, tiny_teacher, out, "--store", "topk", "--topk", vocab)
    assert lskd(argv + ["--shard-size", "250"]) == 0
    return out


@pytest.fixture(scope="module")
def small_cache(tmp_path_factory, tiny_mt_data, tiny_teacher):
    out = tmp_path_factory.mktemp("cache_k4")
    assert lskd(cache_argv(tiny_mt_data.data_bin, tiny_teacher, out, *TOPK4)) == 0
    return out


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory, tiny_mt_data, tiny_teacher):
    """The default store: the tiny teacher's decoder features and output projection."""
    out = tmp_path_factory.mktemp("cache_features")
    assert lskd(cache_argv(tiny_mt_data.data_bin, tiny_teacher, out, "--shard-size", 250)) == 0
    return out


@pytest.fixture(scope="module")
def second_teacher(tiny_teacher, tmp_path_factory):
    """The tiny teacher with its (tied) embeddings halved: another teacher of the same shapes."""
    state = torch.load(tiny_teacher, weights_only=False)
    for key in state["model"]:
        if key.endswith("output_projection.weight") or key.endswith("embed_tokens.weight"):
            state["model"][key] = state["model"][key] * 0.5
    other = tmp_path_factory.mktemp("teacher2") / "other.pt"
    torch.save(state, other)
    return other


def test_header_and_arrays(small_cache, tiny_mt_data, tiny_teacher):
    header = json.loads((small_cache / "header.json").read_text())
    assert header["store"] == "topk" and header["topk"] == 4 and header["temperatures"] == [1.0, 2.0, 64.0]
    assert header["teacher"]["sha256"] == teacher_cache.file_sha256(tiny_teacher)
    cache = teacher_cache.TeacherCache(small_cache, "train")
    assert header["data"]["tokens"] == int(cache.offsets[-1])
    ids, lprobs, logz = (cache.arrays[n] for n in ("ids", "lprobs", "logz"))
    assert header["data"]["tokens"] == ids.shape[0]
    assert lprobs.dtype == np.float16 and ids.dtype == np.int32 and logz.shape[1] == 3
    assert (np.diff(lprobs.astype(np.float32), axis=1) <= 0).all()  # top-k in decreasing order
    assert not (small_cache / ".partial").exists()


def test_cache_lines_up_with_shuffled_batches(small_cache, tiny_mt_data, tiny_teacher):
    """Shuffled, batched training samples: the cached top-1 ids equal the teacher's argmax recomputed."""
    task, model, _ = build(tiny_mt_data.data_bin, "--teacher-cache", small_cache)
    _, _, _ = build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher)
    teacher_task, _, _ = build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher)
    teacher = teacher_task.teachers[0]
    task.load_dataset("train")
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=300, seed=7).next_epoch_itr(
        shuffle=True
    )
    model.train()
    pad = task.target_dictionary.pad()
    for _, sample in zip(range(3), itr):
        source = task.teacher_source(sample, model)
        keep = sample["target"].reshape(-1).ne(pad)
        with torch.no_grad():
            logits = teacher(**sample["net_input"])[0].reshape(-1, source.vocab)[keep]
        cached_ids = source.ids[keep]
        assert torch.equal(cached_ids[:, 0], logits.argmax(-1))
        lp = torch.log_softmax(logits.float(), -1).gather(-1, cached_ids)
        assert torch.allclose(source.lprobs[keep].float(), lp, atol=2e-2)


def kd_step(data_bin, option, value, temperature, *extra):
    """(loss, kd_loss, parameter gradients) of one lskd_kd training step on a fixed shuffled batch."""
    task, model, crit = build(
        data_bin, option, value, "--kd-temperature", temperature, "--dropout", 0, *extra
    )
    task.load_dataset("train")
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=400, seed=1)
    sample = next(iter(itr.next_epoch_itr(shuffle=True)))
    model.train()
    loss, _, log = crit(model, sample)
    loss.backward()
    return loss.item(), log["kd_loss"].item(), [p.grad.clone() for p in model.parameters()]


def assert_same_step(online, cached, rel_loss, rel_kl, rel_grad):
    (l_on, kl_on, g_on), (l_c, kl_c, g_c) = online, cached
    assert l_c == pytest.approx(l_on, rel=rel_loss)
    assert kl_c == pytest.approx(kl_on, rel=rel_kl)
    for a, b in zip(g_on, g_c):
        assert (a - b).norm() <= rel_grad * a.norm() + 1e-6


def test_full_cache_step_equals_online_step(full_cache, tiny_mt_data, tiny_teacher):
    """Top-k with K = V: the cached loss and gradient equal the online ones within the fp16 storage
    tolerance (log-probs stored in float16: 1e-3 of the loss, 5e-3 of the KL, 1e-3 of each gradient)."""
    data = tiny_mt_data.data_bin
    online = kd_step(data, "--teacher-path", tiny_teacher, 2)
    assert_same_step(online, kd_step(data, "--teacher-cache", full_cache, 2), 1e-3, 5e-3, 1e-3)


@pytest.mark.parametrize("temperature", [1, 2, 64])
def test_feature_cache_step_equals_online_step(feature_cache, tiny_mt_data, tiny_teacher, temperature):
    """Features (the default): exact at every temperature up to the float16 rounding of the decoder
    features (relative 2^-11): within 1e-3 of the loss, the KL and each parameter's gradient."""
    data = tiny_mt_data.data_bin
    online = kd_step(data, "--teacher-path", tiny_teacher, temperature)
    cached = kd_step(data, "--teacher-cache", feature_cache, temperature)
    assert_same_step(online, cached, 1e-3, 1e-3, 1e-3)
    assert cached[1] > 0


@pytest.mark.parametrize("method", [["--kd-method", "logit_std"], ["--kd-method", "dkd", "--dkd-beta", 4]])
def test_feature_cache_step_equals_online_step_for_every_method(
    feature_cache, tiny_mt_data, tiny_teacher, method
):
    """logit_std and dkd read the cached features' logits like the online teacher's (issue 18)."""
    data = tiny_mt_data.data_bin
    online = kd_step(data, "--teacher-path", tiny_teacher, 2, *method)
    cached = kd_step(data, "--teacher-cache", feature_cache, 2, *method)
    assert_same_step(online, cached, 1e-3, 1e-3, 1e-3)
    assert cached[1] > 0
    plain = kd_step(data, "--teacher-path", tiny_teacher, 2)
    assert abs(plain[1] - online[1]) > 1e-2 * plain[1]  # the method changes the KD term


@pytest.mark.parametrize("method", ["logit_std", "dkd"])
def test_topk_cache_refuses_the_methods_that_need_logits(small_cache, tiny_mt_data, method):
    with pytest.raises(
        LskdError, match=f"^lskd: error: --kd-method {method} needs the teacher's logits, which "
    ):
        build(tiny_mt_data.data_bin, "--teacher-cache", small_cache, "--kd-method", method)
    build(tiny_mt_data.data_bin, "--teacher-cache", small_cache, "--kd-method", "kd")  # kd: fine


def test_ensemble_feature_cache_equals_the_online_ensemble(
    tiny_mt_data, tiny_teacher, second_teacher, tmp_path
):
    """A ':' ensemble is cached member by member: its averaged distribution is exact at any T."""
    data, pair = tiny_mt_data.data_bin, f"{tiny_teacher}:{second_teacher}"
    out = tmp_path / "ens"
    assert lskd(cache_argv(data, pair, out)) == 0
    header = json.loads((out / "header.json").read_text())
    assert header["members"] == 2 and len(header["teacher"]["members"]) == 2
    assert np.load(out / "train.features.npy", mmap_mode="r").shape[1] == 2
    online = kd_step(data, "--teacher-path", pair, 3)
    assert_same_step(online, kd_step(data, "--teacher-cache", out, 3), 1e-3, 1e-3, 1e-3)
    single = kd_step(data, "--teacher-path", tiny_teacher, 3)
    assert abs(single[1] - online[1]) > 1e-2 * online[1]  # the second member changes the KL


def test_feature_cache_header_and_arrays(feature_cache, tiny_mt_data, tiny_teacher):
    header = json.loads((feature_cache / "header.json").read_text())
    assert header["store"] == "features" and header["members"] == 1 and "topk" not in header
    cache = teacher_cache.TeacherCache(feature_cache, "train")
    features = cache.arrays["features"]
    assert features.dtype == np.float16 and features.shape == (header["data"]["tokens"], 1, header["dim"])
    (projection,) = cache.projections
    assert projection["weight"].shape == (header["vocab"], header["dim"])
    assert np.isfinite(features).all() and np.abs(features).max() > 0


def test_feature_cache_lines_up_with_shuffled_batches(feature_cache, tiny_mt_data, tiny_teacher):
    """Shuffled, batched samples: the cached features, projected, give the teacher's log-probs."""
    task, model, _ = build(tiny_mt_data.data_bin, "--teacher-cache", feature_cache)
    teacher_task, _, _ = build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher)
    teacher = teacher_task.teachers[0]
    task.load_dataset("train")
    itr = task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=300, seed=7)
    model.train()
    pad = task.target_dictionary.pad()
    for _, sample in zip(range(3), itr.next_epoch_itr(shuffle=True)):
        source = task.teacher_source(sample, model)
        keep = sample["target"].reshape(-1).ne(pad).nonzero().squeeze(-1)
        with torch.no_grad():
            logits = teacher(**sample["net_input"])[0].reshape(-1, source.vocab)[keep]
        cached = source.log_probs(keep, 1.0)
        assert torch.equal(cached.argmax(-1), logits.argmax(-1))
        assert torch.allclose(cached, torch.log_softmax(logits.float(), -1), atol=1e-2)


def test_a_decoder_without_one_linear_projection_is_refused():
    from types import SimpleNamespace

    teacher = SimpleNamespace(decoder=SimpleNamespace(adaptive_softmax=object(), output_projection=None))
    with pytest.raises(LskdError, match="--store features needs a decoder whose output layer is one linear"):
        teacher_cache.projections_of([teacher])


def test_version_1_caches_read_as_topk(small_cache, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(small_cache, old)
    header = json.loads((old / "header.json").read_text())
    header.pop("store")
    header["version"] = 1
    (old / "header.json").write_text(json.dumps(header))
    assert teacher_cache.TeacherCache(old, "train").store == "topk"
    header["version"] = 7
    (old / "header.json").write_text(json.dumps(header))
    with pytest.raises(LskdError, match="format version 7"):
        teacher_cache.TeacherCache(old, "train")


def test_validation_with_a_cache_is_the_label_smoothed_ce(small_cache, tiny_mt_data):
    task, model, crit = build(tiny_mt_data.data_bin, "--teacher-cache", small_cache, "--label-smoothing", 0.1)
    _, _, plain = build(
        tiny_mt_data.data_bin, "--label-smoothing", 0.1, criterion="label_smoothed_cross_entropy"
    )
    sample = valid_batch(task)
    model.eval()
    ours, _, log = crit(model, sample)
    assert torch.equal(ours, plain(model, sample)[0]) and "kd_loss" not in log


def test_cache_for_other_data_is_refused(small_cache, tiny_mt_data, tmp_path):
    other = tmp_path / "data-bin"
    shutil.copytree(tiny_mt_data.data_bin, other)
    binfile = other / "train.en-de.de.bin"
    raw = bytearray(binfile.read_bytes())
    raw[10] ^= 1  # one token of the target side changed
    binfile.write_bytes(bytes(raw))
    task, model, _ = build(other, "--teacher-cache", small_cache)
    task.load_dataset("train")
    sample = next(
        iter(task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=300).next_epoch_itr())
    )
    model.train()
    with pytest.raises(LskdError, match=r"was made for other data \(files.train.en-de.de.bin: cache '"):
        task.teacher_source(sample, model)


def first_batch_of(data_bin, cache):
    task, model, _ = build(data_bin, "--teacher-cache", cache)
    task.load_dataset("train")
    sample = next(
        iter(task.get_batch_iterator(dataset=task.dataset("train"), max_tokens=300).next_epoch_itr())
    )
    model.train()
    return task, model, sample


@pytest.mark.parametrize(
    "name, offset, expected",
    [
        ("train.en-de.en.bin", 10, "files.train.en-de.en.bin: cache '"),  # the source side
        # the dictionaries' symbols (this data-bin's are joined: both change, the first is named)
        ("dict.*.txt", 0, "dictionaries.dict.de.txt: cache '"),
    ],
)
def test_cache_for_another_source_side_is_refused(
    small_cache, tiny_mt_data, tmp_path, name, offset, expected
):
    other = tmp_path / "data-bin"
    shutil.copytree(tiny_mt_data.data_bin, other)
    for path in other.glob(name):
        raw = bytearray(path.read_bytes())
        raw[offset] = ord("Z") if name.endswith(".txt") else raw[offset] ^ 1
        path.write_bytes(bytes(raw))
    task, model, sample = first_batch_of(other, small_cache)
    with pytest.raises(LskdError, match=r"was made for other data \(" + expected.replace(".", r"\.")):
        task.teacher_source(sample, model)


def test_cache_recording_only_the_target_side_is_refused(small_cache, tiny_mt_data, tmp_path):
    old = tmp_path / "old_cache"
    shutil.copytree(small_cache, old)
    header = json.loads((old / "header.json").read_text())
    for key in ("source_tokens", "dictionaries"):
        header["data"].pop(key)
    (old / "header.json").write_text(json.dumps(header))
    task, model, sample = first_batch_of(tiny_mt_data.data_bin, old)
    with pytest.raises(LskdError, match="records only the target side of its data"):
        task.teacher_source(sample, model)
    # the same data recorded on both sides is accepted
    task, model, sample = first_batch_of(tiny_mt_data.data_bin, small_cache)
    assert task.teacher_source(sample, model) is not None


def test_another_teacher_into_the_same_cache_is_refused(
    small_cache, tiny_mt_data, second_teacher, tmp_path, capsys
):
    assert_fails_one_line(
        cache_argv(tiny_mt_data.data_bin, second_teacher, small_cache, *TOPK4),
        capsys,
        unchanged=[small_cache],
        must_contain=["holds results made with other settings", "--overwrite"],
    )


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--store", "topk", "--topk", 0], "--topk"),
        (["--store", "topk", "--temperatures", "1,0"], "temperatures must be finite numbers > 0"),
        (["--shard-size", -1], "--shard-size"),
        (["--topk", 8], "--topk applies only to --store topk"),
        (["--temperatures", "2", "--topk", 4], "--topk and --temperatures apply only to --store topk"),
        (["--store", "exact"], "--store"),
    ],
)
def test_bad_numbers_are_one_line(tiny_mt_data, tiny_teacher, tmp_path, capsys, extra, message):
    assert_fails_one_line(
        cache_argv(tiny_mt_data.data_bin, tiny_teacher, tmp_path / "c", *extra),
        capsys,
        must_contain=[message],
    )
    assert not (tmp_path / "c").exists()


def test_ensemble_file_output_and_data_are_refused(tiny_mt_data, tiny_teacher, tmp_path, capsys):
    assert_fails_one_line(
        cache_argv(tiny_mt_data.data_bin, f"{tiny_teacher}:{tiny_teacher}", tmp_path / "c", *TOPK4),
        capsys,
        must_contain=["ensemble cannot be cached with --store topk", "--store features"],
    )
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_fails_one_line(
        cache_argv(tiny_mt_data.data_bin, tiny_teacher, a_file),
        capsys,
        unchanged=[a_file],
        must_contain=["is a file"],
    )
    assert_fails_one_line(
        cache_argv(tiny_mt_data.data_bin, tiny_teacher, tiny_mt_data.data_bin / "cache"),
        capsys,
        unchanged=[tiny_mt_data.data_bin],
        must_contain=["would write over the input"],
    )
    assert_fails_one_line(
        cache_argv(a_file.parent / "nodata", tiny_teacher, tmp_path / "c"),
        capsys,
        must_contain=["not a fairseq data-bin"],
    )


def test_corrupt_or_missing_header_is_one_line(small_cache, tiny_mt_data, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_cache, broken)
    (broken / "header.json").write_text("{not json")
    with pytest.raises(LskdError, match="unreadable or corrupt"):
        build(tiny_mt_data.data_bin, "--teacher-cache", broken)
    (broken / "header.json").unlink()
    with pytest.raises(LskdError, match="holds no header.json"):
        build(tiny_mt_data.data_bin, "--teacher-cache", broken)


@pytest.mark.parametrize("store", [TOPK4, ()], ids=["topk", "features"])
def test_killed_run_resumes_to_the_same_arrays(store, tiny_mt_data, tiny_teacher, tmp_path, monkeypatch):
    """--out (the old name) still works; a run killed after 2 shards resumes and equals a clean run."""
    out = tmp_path / "resumed"
    argv = cache_argv(tiny_mt_data.data_bin, tiny_teacher, out, *store, "--shard-size", 100)
    argv[argv.index("--output")] = "--out"
    real = teacher_cache.PartialCache.finish_shard
    calls = []

    def killed_after_two(self):
        real(self)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(teacher_cache.PartialCache, "finish_shard", killed_after_two)
    assert lskd(argv) == 130
    assert json.loads((out / ".partial" / "done.json").read_text())["shards"] == 2
    assert not (out / "header.json").exists()
    monkeypatch.setattr(teacher_cache.PartialCache, "finish_shard", real)
    assert lskd(argv) == 0
    clean = tmp_path / "clean"
    argv_clean = cache_argv(tiny_mt_data.data_bin, tiny_teacher, clean, *store)
    assert lskd(argv_clean + ["--shard-size", "100"]) == 0
    header = json.loads((clean / "header.json").read_text())
    for name in teacher_cache.ARRAYS[header["store"]]:
        a, b = np.load(out / f"train.{name}.npy"), np.load(clean / f"train.{name}.npy")
        assert np.array_equal(a, b), name
    assert lskd(argv) == 0  # complete: nothing to do


def test_benchmark_report_ends_with_the_summary_line(repo_root, capsys):
    """benchmarks/teacher_cache.py prints its table, then the one-line summary as its last line."""
    import importlib.util
    import re

    spec = importlib.util.spec_from_file_location(
        "bench_teacher_cache", repo_root / "benchmarks" / "teacher_cache.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    steps = {"plain": 1.0, "teacher_fwd": 0.3, "online": 1.4, "cached_k8": 1.05}
    rows = [
        dict(
            teacher="LS",
            k=8,
            T=2.0,
            online=10.0,
            cached=10.1,
            rel_err_of_sum=0.01,
            rel_err_per_token=0.02,
            kl_online_per_token=0.5,
            tail_floor_per_token=0.0123,
        )
    ]
    summary = dict(X=1.05, W=1.4, F=1.3, M=1.2, Z=0.02)
    result = dict(
        device="cpu", threads=2, setting="s", s_per_step=steps, peak_bytes={k: 2**20 for k in steps}
    )
    bench.report(dict(result, kl=rows, disk_bytes_per_token={8: 64.5}, summary=summary))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == (
        "ratio_cached_vs_plain=1.050 ratio_online_vs_plain=1.400 floor=1.300 "
        "mem_online_vs_plain=1.200 kl_rel_err=0.02000"
    )
    assert any(re.match(r"cached_k8\s+1050\.0\s+1\.050", line) for line in lines)
    assert any(
        re.match(r"LS\s+8\s+2\s+10\.00\s+10\.10\s+0\.01000\s+0\.02000\s+0\.5000\s+0\.0123$", line)
        for line in lines
    )


def test_a_folder_as_teacher_is_named_as_a_folder(tiny_mt_data, tmp_path, capsys):
    """cache-teacher --path DIR and --teacher-path DIR (the same loader): not 'not found'."""
    folder = tmp_path / "teacher_run"
    folder.mkdir()
    line = assert_fails_one_line(
        cache_argv(tiny_mt_data.data_bin, folder, tmp_path / "cache"),
        capsys,
        unchanged=[tiny_mt_data.data_bin, tmp_path],
        must_contain=[
            f"{folder} is a folder; give the checkpoint file in it (e.g. {folder / 'checkpoint_best.pt'})"
        ],
    )
    assert "not found" not in line
    with pytest.raises(LskdError, match=f"{folder} is a folder; give the checkpoint file in it"):
        task, _, _ = build(tiny_mt_data.data_bin, "--teacher-path", folder)
        task.load_teachers()
