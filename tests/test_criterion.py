"""The lskd_kd criterion and the lskd_translation task, in process, on a real data-bin.

Models, tasks and criteria are built through fairseq's own argument parser and registries (as
fairseq-train does), on batches of the tiny preprocessed corpus.
"""

import math

import pytest
import torch

fairseq = pytest.importorskip("fairseq")

from fairseq import options, tasks  # noqa: E402
from fairseq.data import Dictionary  # noqa: E402
from fairseq.dataclass.utils import convert_namespace_to_omegaconf  # noqa: E402
from fairseq.logging import metrics  # noqa: E402
from fairseq_fixtures import TINY_ARCH, USER_DIR  # noqa: E402
from kd_reference import reference_kd  # noqa: E402

from lskd_plugins.errors import LskdError  # noqa: E402
from lskd_plugins.fairseq_io import register_plugins  # noqa: E402

register_plugins()

from lskd_plugins.criterions.lskd_kd import LskdKdCriterion  # noqa: E402
from lskd_plugins.tasks.lskd_translation import (  # noqa: E402
    check_teacher_dictionaries,
    dictionary_mismatch,
    first_difference,
)


def build(data_bin, *extra, task="lskd_translation", criterion="lskd_kd", seed=0):
    """(task, model, criterion) exactly as fairseq-train builds them from a command line."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser,
        [
            str(data_bin),
            "--user-dir",
            USER_DIR,
            "--task",
            task,
            "--criterion",
            criterion,
            *TINY_ARCH,
            "--cpu",
            *map(str, extra),
        ],
    )
    cfg = convert_namespace_to_omegaconf(args)
    t = tasks.setup_task(cfg.task)
    torch.manual_seed(seed)
    model = t.build_model(cfg.model)
    return t, model, t.build_criterion(cfg.criterion)


def valid_batch(task, max_tokens=400):
    task.load_dataset("valid")
    itr = task.get_batch_iterator(dataset=task.dataset("valid"), max_tokens=max_tokens, seed=1)
    return next(iter(itr.next_epoch_itr(shuffle=False)))


def logged(criterion_cls, logging_output):
    with metrics.aggregate(new_root=True) as agg:
        criterion_cls.reduce_metrics([logging_output])
        return agg.get_smoothed_values()


@pytest.mark.parametrize("eps,prefix,sentence_avg", [(0.1, 0, False), (0.0, 0, False), (0.2, 1, True)])
def test_alpha_zero_is_fairseq_label_smoothed_ce_exactly(tiny_mt_data, eps, prefix, sentence_avg):
    common = ["--label-smoothing", eps, "--ignore-prefix-size", prefix, "--report-accuracy"]
    common += ["--sentence-avg"] if sentence_avg else []
    task, model, ours = build(tiny_mt_data.data_bin, "--kd-alpha", 0, *common)
    assert task.teachers is None  # alpha 0: no --teacher-path needed, nothing loaded
    _, _, theirs = build(tiny_mt_data.data_bin, *common, criterion="label_smoothed_cross_entropy")
    sample = valid_batch(task)
    model.train()  # dropout on: same RNG state for both passes
    results = []
    for criterion in (ours, theirs):
        model.zero_grad()
        torch.manual_seed(123)
        loss, sample_size, log = criterion(model, sample)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((loss, sample_size, log, grads))
    (l1, n1, log1, g1), (l2, n2, log2, g2) = results
    assert torch.equal(l1, l2)
    assert torch.equal(log1["nll_loss"], log2["nll_loss"])
    assert n1 == n2 and log1["ntokens"] == log2["ntokens"] and log1["n_correct"] == log2["n_correct"]
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    assert "kd_loss" not in log1
    v1, v2 = logged(type(ours), log1), logged(type(theirs), log2)
    for key in ("loss", "nll_loss", "ppl", "accuracy"):
        assert v1[key] == v2[key], key


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_kd_loss_and_logs_match_direct_computation(tiny_mt_data, tiny_teacher, T):
    task, model, crit = build(
        tiny_mt_data.data_bin,
        "--teacher-path",
        tiny_teacher,
        "--kd-alpha",
        0.9,
        "--kd-temperature",
        T,
        "--label-smoothing",
        0.1,
    )
    assert len(task.teachers) == 1
    sample = valid_batch(task)
    model.eval()
    loss, sample_size, log = crit(model, sample)
    with torch.no_grad():
        student = model(**sample["net_input"])[0]
        teacher = task.teachers[0](**sample["net_input"])[0]
    ref = reference_kd(
        student, [teacher], sample["target"], task.target_dictionary.pad(), alpha=0.9, T=T, eps=0.1
    )
    assert sample_size == sample["ntokens"] == ref["n"]
    torch.testing.assert_close(loss.double(), ref["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log["kd_loss"].double(), ref["kl"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log["ce_loss"].double(), ref["ce"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log["teacher_nll_loss"].double(), ref["tnll"], rtol=1e-5, atol=1e-6)
    values = logged(LskdKdCriterion, log)
    n, ln2 = ref["n"], math.log(2)
    assert values["loss"] == pytest.approx(round(ref["loss"].item() / n / ln2, 3), abs=1e-3)
    assert values["kd_loss"] == pytest.approx(round(ref["kl"].item() / n / ln2, 4), abs=1e-4)
    assert values["nll_loss"] == pytest.approx(round(ref["nll"].item() / n / ln2, 3), abs=1e-3)
    assert values["teacher_nll_loss"] == pytest.approx(round(ref["tnll"].item() / n / ln2, 3), abs=1e-3)
    assert values["ce_loss"] == pytest.approx(round(ref["ce"].item() / n / ln2, 3), abs=1e-3)
    assert values["ppl"] == pytest.approx(2 ** values["nll_loss"], rel=1e-2)


def test_t2_switch(tiny_mt_data, tiny_teacher):
    losses = {}
    for switch in ([], ["--no-kd-t2-scaling"]):
        task, model, crit = build(
            tiny_mt_data.data_bin,
            "--teacher-path",
            tiny_teacher,
            "--kd-alpha",
            1.0,
            "--kd-temperature",
            3.0,
            *switch,
        )
        model.eval()
        losses[bool(switch)] = crit(model, valid_batch(task))[0]
    torch.testing.assert_close(losses[False], 9.0 * losses[True], rtol=1e-6, atol=0)


def test_ensemble_averages_probabilities(tiny_mt_data, tiny_teacher):
    task, model, crit = build(
        tiny_mt_data.data_bin,
        "--teacher-path",
        f"{tiny_teacher}:{tiny_teacher}",
        "--kd-alpha",
        0.5,
        "--kd-temperature",
        2.0,
    )
    first, second = task.teachers
    assert first is not second
    with torch.no_grad():  # make the two members differ
        for p in second.parameters():
            p.mul_(0.5)
    sample = valid_batch(task)
    model.eval()
    loss, _, log = crit(model, sample)
    with torch.no_grad():
        student = model(**sample["net_input"])[0]
        members = [t(**sample["net_input"])[0] for t in (first, second)]
    ref = reference_kd(
        student, members, sample["target"], task.target_dictionary.pad(), alpha=0.5, T=2.0, eps=0.1
    )
    torch.testing.assert_close(loss.double(), ref["loss"], rtol=1e-5, atol=1e-6)
    single = reference_kd(
        student, members[:1], sample["target"], task.target_dictionary.pad(), alpha=0.5, T=2.0, eps=0.1
    )
    assert abs(single["kl"] - ref["kl"]) > 1e-3 * ref["kl"]  # the second member matters


def test_teacher_outside_checkpointed_state_and_follows_student_dtype(tiny_mt_data, tiny_teacher):
    task, model, crit = build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher)
    teacher = task.teachers[0]
    assert crit.state_dict() == {} and list(crit.parameters()) == []
    teacher_params = {id(p) for p in teacher.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    model.train()
    sample = valid_batch(task)
    model.to(torch.bfloat16)
    loss, _, log = crit(model, sample)
    assert next(teacher.parameters()).dtype == torch.bfloat16 and not teacher.training
    assert torch.isfinite(loss) and log["kd_loss"] > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    model.float()
    crit(model, sample)
    assert next(teacher.parameters()).dtype == torch.float32
    assert len(task.teachers) == 1 and task.teachers[0] is teacher  # loaded once


def test_missing_teacher_path_is_a_one_line_error(tiny_mt_data):
    with pytest.raises(LskdError, match=r"distils from a teacher: pass --teacher-path CKPT"):
        build(tiny_mt_data.data_bin, "--kd-alpha", 0.9)


def test_missing_teacher_file_names_the_path(tiny_mt_data, tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(LskdError, match=f"teacher checkpoint not found: {missing}"):
        build(tiny_mt_data.data_bin, "--teacher-path", missing)


def test_unreadable_teacher_file_names_the_path(tiny_mt_data, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(LskdError, match=f"--teacher-path {garbage} is not a readable PyTorch file"):
        build(tiny_mt_data.data_bin, "--teacher-path", garbage)


def test_truncated_teacher_and_image_checkpoint_say_what_was_found(tiny_mt_data, tiny_teacher, tmp_path):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(tiny_teacher, "rb").read()[:5000])
    with pytest.raises(LskdError, match=r"is not a readable PyTorch file \(truncated or corrupt"):
        build(tiny_mt_data.data_bin, "--teacher-path", truncated)
    image = tmp_path / "image.pth"
    torch.save({"format": "lskd-image-v1", "model_name": "resnet18", "state_dict": {}}, image)
    with pytest.raises(
        LskdError, match=r"is an lskd image checkpoint \(timm model resnet18\); expected a fairseq"
    ):
        build(tiny_mt_data.data_bin, "--teacher-path", image)
    timm_style = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, timm_style)
    with pytest.raises(LskdError, match=r"timm/PyTorch training checkpoint \(weights under 'state_dict'"):
        build(tiny_mt_data.data_bin, "--teacher-path", timm_style)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--kd-temperature", 0], "--kd-temperature must be a finite number > 0, got 0.0"),
        (["--kd-temperature", -2], "--kd-temperature must be a finite number > 0, got -2.0"),
        (["--kd-temperature", "nan"], "--kd-temperature must be a finite number > 0, got nan"),
        (["--kd-temperature", "inf"], "--kd-temperature must be a finite number > 0, got inf"),
        (["--kd-alpha", 1.5], r"--kd-alpha must lie in \[0, 1\], got 1.5"),
        (["--kd-alpha", "nan"], r"--kd-alpha must lie in \[0, 1\], got nan"),
        (["--label-smoothing", 1.0], r"--label-smoothing must lie in \[0, 1\), got 1.0"),
        (["--label-smoothing", -0.1], r"--label-smoothing must lie in \[0, 1\), got -0.1"),
        (["--ignore-prefix-size", -1], "--ignore-prefix-size must be >= 0, got -1"),
    ],
)
def test_bad_options(tiny_mt_data, flags, message):
    with pytest.raises(LskdError, match=message):
        build(tiny_mt_data.data_bin, *flags)


def test_kd_needs_the_lskd_task(tiny_mt_data):
    with pytest.raises(LskdError, match="use --task lskd_translation --teacher-path CKPT"):
        build(tiny_mt_data.data_bin, "--kd-alpha", 0.5, task="translation")


def _dict(symbols):
    d = Dictionary()
    for s in symbols:
        d.add_symbol(s)
    return d


def test_first_difference_and_dictionary_mismatch():
    assert first_difference(["a", "b"], ["a", "b"]) is None
    assert first_difference(["a", "b"], ["a", "c"]) == "first difference at index 1: teacher 'b', student 'c'"
    assert first_difference(["a"], ["a", "c"]) == "first difference at index 1: teacher <none>, student 'c'"
    t, s = _dict(["x", "y"]), _dict(["x", "z", "w"])
    assert dictionary_mismatch("target", t, s) == (
        f"target dictionary: teacher {len(t)} symbols, student {len(s)} symbols; "
        f"first difference at index {t.nspecial + 1}: teacher 'y', student 'z'"
    )
    assert dictionary_mismatch("source", t, _dict(["x", "y"])) is None


def _write_dicts(folder, symbols):
    folder.mkdir(parents=True, exist_ok=True)
    for lang in ("en", "de"):
        _dict(symbols).save(str(folder / f"dict.{lang}.txt"))


def test_dictionary_check_is_an_error_from_any_directory(tmp_path, monkeypatch):
    """A teacher trained with a relative data path, checked from another working directory: its
    data-bin is found from the checkpoint's folders and the first differing symbol is named; where
    no data-bin is found at all, the check is an error (never a size-only warning)."""
    run = tmp_path / "run"
    _write_dicts(run / "data-bin", ["a", "b", "c"])
    (run / "checkpoints").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    state = {"cfg": {"task": {"data": "data-bin", "source_lang": "en", "target_lang": "de"}}, "model": {}}
    ckpt = str(run / "checkpoints" / "t.pt")
    student = _dict(["a", "c", "b"])
    with pytest.raises(LskdError, match=r"first difference at index 5: teacher 'b', student 'c'"):
        check_teacher_dictionaries(ckpt, state, student, student, "en", "de")
    check_teacher_dictionaries(ckpt, state, _dict(["a", "b", "c"]), _dict(["a", "b", "c"]), "en", "de")
    state["cfg"]["task"]["data"] = "gone"
    with pytest.raises(LskdError, match=r"cannot be compared .* pass --teacher-data DIR"):
        check_teacher_dictionaries(ckpt, state, student, student, "en", "de")
    with pytest.raises(LskdError, match=r"first difference at index 5"):
        check_teacher_dictionaries(ckpt, state, student, student, "en", "de", str(run / "data-bin"))


def test_reduce_false_gives_per_token_losses_summing_to_the_reduced(tiny_mt_data, tiny_teacher):
    task, model, crit = build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher, "--kd-temperature", 2)
    sample = valid_batch(task)
    model.eval()
    loss, _, log = crit(model, sample)
    per_token, _, log_per = crit(model, sample, reduce=False)
    assert per_token.shape == (sample["target"].numel(),)
    assert per_token[sample["target"].reshape(-1).eq(task.target_dictionary.pad())].abs().max() == 0
    torch.testing.assert_close(per_token.sum(), loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_per["kd_loss"], log["kd_loss"], rtol=1e-5, atol=1e-5)


def test_a_subclass_overrides_one_piece(tiny_mt_data, tiny_teacher):
    """fairseq's shape: a subclass that drops the KD term in compute_loss's teacher hook."""

    class NoTeacher(LskdKdCriterion):
        def get_teacher(self, model, sample):
            return None

    task, model, crit = build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher, "--label-smoothing", 0.1)
    sub = NoTeacher(task, False, kd_alpha=0.9, label_smoothing=0.1)
    _, _, plain = build(
        tiny_mt_data.data_bin, "--label-smoothing", 0.1, criterion="label_smoothed_cross_entropy"
    )
    sample = valid_batch(task)
    model.eval()
    ours, _, log = sub(model, sample)
    theirs, _, _ = plain(model, sample)
    assert torch.equal(ours, theirs) and "kd_loss" not in log
    lprobs, target = crit.get_lprobs_and_target(model, model(**sample["net_input"]), sample)
    assert lprobs.shape == (target.numel(), len(task.target_dictionary))
    n_correct, total = crit.compute_accuracy(model, model(**sample["net_input"]), sample)
    assert total == sample["ntokens"] and 0 <= n_correct <= total


def test_teacher_path_and_cache_together_are_refused(tiny_mt_data, tiny_teacher, tmp_path):
    with pytest.raises(LskdError, match="--teacher-path and --teacher-cache both given"):
        build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher, "--teacher-cache", tmp_path)


def test_eval_bleu_generator_stays_the_students(tiny_mt_data, tiny_teacher):
    task, model, _ = build(tiny_mt_data.data_bin, "--teacher-path", tiny_teacher, "--eval-bleu")
    assert task.teachers is not None
    assert task.sequence_generator.model.models[0] is model


def test_kd_step_benchmark_reports_consistent_figures(repo_root, tmp_path, cli_env):
    """benchmarks/kd_step.py in a subprocess (it tunes malloc to measure peak RSS)."""
    import json
    import sys

    from fairseq_fixtures import run_cli

    out = tmp_path / "kd_step.json"
    proc = run_cli(
        [
            sys.executable,
            repo_root / "benchmarks" / "kd_step.py",
            "--device",
            "cpu",
            "--layers",
            "1",
            "--embed-dim",
            "16",
            "--ffn-dim",
            "32",
            "--heads",
            "2",
            "--vocab",
            "200",
            "--batch-tokens",
            "100",
            "--length",
            "10",
            "--batches",
            "2",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            out,
        ],
        cli_env,
    )
    r = json.loads(out.read_text())
    ls, kd = r["median_s_per_step"]["label_smoothed_cross_entropy"], r["median_s_per_step"]["lskd_kd"]
    assert ls > 0 and kd > 0 and r["ratio_kd_over_ls"] == pytest.approx(kd / ls)
    assert f"KD / LS time ratio: {r['ratio_kd_over_ls']:.2f}x" in proc.stdout
    assert r["params_student"] == r["params_teacher"] > 0
    assert r["batch_tokens"] == 100
    names = {"label_smoothed_cross_entropy", "lskd_kd", "lskd_kd:logit_std", "lskd_kd:dkd"}
    assert set(r["peak_step_memory_bytes"]) == set(r["time_ratio_over_ls"]) == names
    peak = r["peak_step_memory_bytes"]
    for method in ("logit_std", "dkd"):
        ratio = r["peak_memory_ratio_over_kd"][method]
        assert ratio == pytest.approx(peak[f"lskd_kd:{method}"] / peak["lskd_kd"])
        assert (
            f"{method} / kd: time " in proc.stdout and f"peak memory {ratio:.2f}x (vocab 200)" in proc.stdout
        )


# -- --kd-method {kd,logit_std,dkd} --------------------------------------------------------------
@pytest.mark.parametrize(
    "flags,method",
    [
        ([], dict(method="kd")),
        (["--kd-method", "logit_std"], dict(method="logit_std")),
        (["--kd-method", "dkd"], dict(method="dkd", dkd_alpha=1.0, dkd_beta=8.0)),
        (
            ["--kd-method", "dkd", "--dkd-alpha", 0.5, "--dkd-beta", 2],
            dict(method="dkd", dkd_alpha=0.5, dkd_beta=2.0),
        ),
    ],
)
def test_kd_method_loss_matches_direct_computation(tiny_mt_data, tiny_teacher, flags, method):
    """Each method through fairseq's parser: the step's loss and logged D equal the float64
    formulas (tests/kd_reference.py) on the teacher's and student's logits, ensemble of one."""
    task, model, crit = build(
        tiny_mt_data.data_bin,
        "--teacher-path",
        tiny_teacher,
        "--kd-alpha",
        0.8,
        "--kd-temperature",
        2,
        *flags,
    )
    assert crit.method == {"dkd_alpha": 1.0, "dkd_beta": 8.0, **method}
    sample = valid_batch(task)
    model.eval()
    loss, _, log = crit(model, sample)
    with torch.no_grad():
        student = model(**sample["net_input"])[0]
        teacher = task.teachers[0](**sample["net_input"])[0]
    pad = task.target_dictionary.pad()
    ref = reference_kd(student, [teacher], sample["target"], pad, alpha=0.8, T=2.0, eps=0.1, **method)
    torch.testing.assert_close(loss.double(), ref["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log["kd_loss"].double(), ref["kl"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log["teacher_nll_loss"].double(), ref["tnll"], rtol=1e-5, atol=1e-6)
    per_token, _, log_per = crit(model, sample, reduce=False)  # reduce=False covers the methods
    torch.testing.assert_close(per_token.sum(), loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(log_per["kd_loss"], log["kd_loss"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--kd-method", "crd"], "--kd-method must be one of kd, logit_std, dkd; got 'crd'"),
        (["--dkd-beta", 2], r"--dkd-beta applies to --kd-method dkd only \(got --kd-method kd\)"),
        (
            ["--kd-method", "logit_std", "--dkd-alpha", 1, "--dkd-beta", 2],
            r"--dkd-alpha/--dkd-beta apply to --kd-method dkd only \(got --kd-method logit_std\)",
        ),
        (["--kd-method", "dkd", "--dkd-alpha", -1], "--dkd-alpha must be a finite number >= 0, got -1.0"),
        (["--kd-method", "dkd", "--dkd-beta", "inf"], "--dkd-beta must be a finite number >= 0, got inf"),
        (["--kd-method", "dkd", "--dkd-beta", "nan"], "--dkd-beta must be a finite number >= 0, got nan"),
        (
            ["--kd-method", "dkd", "--dkd-alpha", 0, "--dkd-beta", 0],
            "--dkd-alpha and --dkd-beta are both 0: the DKD term would be 0",
        ),
    ],
)
def test_bad_kd_method_options(tiny_mt_data, flags, message):
    with pytest.raises(LskdError, match=f"^lskd: error: {message}$"):
        build(tiny_mt_data.data_bin, "--kd-alpha", 0, *flags)


def test_kd_method_errors_are_one_line_from_fairseq_train(tiny_mt_data, cli_env, tmp_path):
    from fairseq_fixtures import run_cli

    proc = run_cli(
        [
            "fairseq-train",
            tiny_mt_data.data_bin,
            "--user-dir",
            USER_DIR,
            "--task",
            "lskd_translation",
            "--criterion",
            "lskd_kd",
            *TINY_ARCH,
            "--cpu",
            "--max-tokens",
            "500",
            "--kd-alpha",
            "0",
            "--kd-method",
            "softmax",
            "--save-dir",
            tmp_path,
        ],
        cli_env,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "lskd: error: --kd-method must be one of kd, logit_std, dkd; got 'softmax'"
    )
    assert "Traceback" not in proc.stderr


def test_hydra_config_trains_dkd_and_the_checkpoint_stores_the_method(
    tiny_mt_data, tiny_teacher, cli_env, tmp_path, repo_root
):
    """recipes/hydra/lskd_kd.yaml with criterion.kd_method=dkd: the method is logged and stored in
    the checkpoint's cfg (fairseq saves the whole configuration)."""
    from fairseq_fixtures import run_cli

    env = {k: v for k, v in cli_env.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    tiny = dict(layers=1, embed_dim=32, ffn_embed_dim=64, attention_heads=2)
    out = run_cli(
        [
            "fairseq-hydra-train",
            "--config-dir",
            repo_root / "recipes" / "hydra",
            "--config-name",
            "lskd_kd",
            f"common.user_dir={USER_DIR}",
            f"task.data={tiny_mt_data.data_bin}",
            f"task.teacher_path={tiny_teacher}",
            f"checkpoint.save_dir={tmp_path / 'student'}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
            "optimization.max_update=2",
            "common.cpu=true",
            "dataset.num_workers=0",
            "criterion.kd_method=dkd",
            "criterion.dkd_beta=2.0",
            *[f"model.{side}_{k}={v}" for k, v in tiny.items() for side in ("encoder", "decoder")],
        ],
        env,
        cwd=tmp_path,
    )
    assert "lskd_kd: method dkd (dkd_alpha 1.0, dkd_beta 2.0), kd_alpha 0.9, T 1.0" in out.stdout + out.stderr
    state = torch.load(tmp_path / "student" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    criterion = state["cfg"]["criterion"]
    assert (criterion["kd_method"], criterion["dkd_alpha"], criterion["dkd_beta"]) == ("dkd", None, 2.0)
