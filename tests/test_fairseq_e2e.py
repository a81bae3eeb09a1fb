"""End to end through fairseq's real CLIs: preprocess, LS teacher, KD student, resume, generate.

The data-bin and the teacher are the session fixtures ``tiny_mt_data`` and ``tiny_teacher``
(fairseq-preprocess and fairseq-train with label_smoothed_cross_entropy). Nobody exports
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD here: ``--user-dir lskd_plugins`` must be enough.
"""

import re

import pytest
import torch
from fairseq_fixtures import TINY_ARCH, TINY_TRAIN, USER_DIR, preprocess, run_cli, write_parallel_text

pytestmark = pytest.mark.fairseq

STUDENT = [
    "--user-dir",
    USER_DIR,
    "--task",
    "lskd_translation",
    "--criterion",
    "lskd_kd",
    "--kd-alpha",
    "0.9",
    "--kd-temperature",
    "1",
    "--label-smoothing",
    "0.1",
]
EVAL_BLEU = [
    "--eval-bleu",
    "--eval-bleu-args",
    '{"beam": 1, "max_len_a": 1.2, "max_len_b": 5}',
    "--best-checkpoint-metric",
    "bleu",
    "--maximize-best-checkpoint-metric",
]


@pytest.fixture
def env(cli_env):
    e = dict(cli_env)
    e.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    return e


@pytest.fixture(scope="module")
def student_runs(tmp_path_factory, tiny_mt_data, tiny_teacher, cli_env):
    """A KD student trained to 6 updates with --eval-bleu, then resumed to 12."""
    env = dict(cli_env)
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    save_dir = tmp_path_factory.mktemp("student")
    cmd = [
        "fairseq-train",
        tiny_mt_data.data_bin,
        *TINY_ARCH,
        *TINY_TRAIN,
        *STUDENT,
        *EVAL_BLEU,
        "--teacher-path",
        tiny_teacher,
        "--save-dir",
        save_dir,
    ]
    first = run_cli([*cmd, "--max-update", "6", "--tensorboard-logdir", save_dir / "tb"], env)
    second = run_cli([*cmd, "--max-update", "12"], env)
    return {
        "save_dir": save_dir,
        "first": first.stdout + first.stderr,
        "second": second.stdout + second.stderr,
    }


def _metric(log: str, tag: str, name: str) -> list:
    """Values of ``name`` on the log lines of ``tag`` ('train', 'valid', 'train_inner')."""
    values = []
    for line in log.splitlines():
        if f"| {tag} |" in line:
            m = re.search(rf"\b{name}[ =]([-\d.]+)", line)
            if m:
                values.append(float(m.group(1)))
    return values


def test_student_logs_kd_loss_and_eval_bleu(student_runs, tiny_teacher):
    log = student_runs["first"]
    assert f"lskd: teacher {tiny_teacher}: TransformerModel" in log
    for tag in ("train", "valid"):
        kd = _metric(log, tag, "kd_loss")
        assert kd and all(v > 0 for v in kd), tag
        assert _metric(log, tag, "teacher_nll_loss"), tag
        assert _metric(log, tag, "ce_loss"), tag
    assert _metric(log, "valid", "bleu"), "fairseq's --eval-bleu reported no bleu"
    assert _metric(log, "train", "num_updates")[-1] == 6


def test_tensorboard_events_hold_the_plugins_scalars(student_runs):
    """fairseq's --tensorboard-logdir with the plugins: event files per split holding kd_loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_values = {"train": _metric(student_runs["first"], "train", "kd_loss")}
    for split in ("train", "valid"):
        acc = EventAccumulator(str(student_runs["save_dir"] / "tb" / split))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"kd_loss", "teacher_nll_loss", "ce_loss", "nll_loss", "loss"} <= tags, (split, tags)
        events = acc.Scalars("kd_loss")
        assert events and all(e.value > 0 for e in events)
        if split in log_values:  # the same number as the text log's end-of-epoch line
            assert events[-1].value == pytest.approx(log_values[split][-1], abs=1e-3)


def test_validate_a_student_without_its_teacher(student_runs, tiny_mt_data, env, tmp_path):
    """docs/fairseq_plugins.md: --model-overrides sets kd_alpha 0 (the saved criterion is rebuilt by
    fairseq-validate), so the teacher is neither needed nor loaded, from any directory."""
    ckpt = student_runs["save_dir"] / "checkpoint_last.pt"
    out = run_cli(
        [
            "fairseq-validate",
            tiny_mt_data.data_bin,
            "--user-dir",
            USER_DIR,
            "--path",
            ckpt,
            "--task",
            "lskd_translation",
            "--model-overrides",
            "{'kd_alpha': 0.0, 'teacher_path': ''}",
            "--cpu",
            "--max-tokens",
            "2000",
        ],
        env,
        cwd=tmp_path,
    )
    log = out.stdout + out.stderr
    line = next(x for x in log.splitlines() if "valid on 'valid' subset" in x)
    assert "nll_loss" in line and "kd_loss" not in line and "lskd: teacher" not in log


def test_hydra_example_config_trains_a_kd_student(tiny_mt_data, tiny_teacher, env, tmp_path, repo_root):
    """recipes/hydra/lskd_kd.yaml through fairseq-hydra-train (tiny sizes by override)."""
    tiny = {
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_embed_dim": 32,
        "decoder_embed_dim": 32,
        "encoder_ffn_embed_dim": 64,
        "decoder_ffn_embed_dim": 64,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
    }
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
            "optimization.max_update=3",
            "common.cpu=true",
            "dataset.num_workers=0",
            "common.log_interval=1",
            *[f"model.{k}={v}" for k, v in tiny.items()],
        ],
        env,
        cwd=tmp_path,
    )
    log = out.stdout + out.stderr
    for tag in ("train", "valid"):  # hydra's log lines: "[...][train][INFO] - epoch 001 | loss ..."
        lines = [x for x in log.splitlines() if f"][{tag}][INFO]" in x]
        assert lines and re.search(r"\| kd_loss [\d.]+", lines[-1]), (tag, lines)
    assert f"lskd: teacher {tiny_teacher}" in log
    assert (tmp_path / "student" / "checkpoint_last.pt").is_file()


def test_student_from_a_teacher_cache(tiny_mt_data, tiny_teacher, env, tmp_path):
    """lskd cache-teacher, then fairseq-train --teacher-cache: KD terms logged in training, no
    teacher loaded; validation reports the label-smoothed CE (the cache covers train)."""
    cache = tmp_path / "cache"
    lskd = [
        str(p) for p in ("lskd", "cache-teacher", "--data", tiny_mt_data.data_bin, "--path", tiny_teacher)
    ]
    run_cli([*lskd, "--output", cache, "--no-progress"], env)  # the exact store (features)
    out = run_cli(
        [
            "fairseq-train",
            tiny_mt_data.data_bin,
            *TINY_ARCH,
            *TINY_TRAIN,
            *STUDENT,
            "--teacher-cache",
            cache,
            "--max-update",
            "4",
            "--save-dir",
            tmp_path / "student",
        ],
        env,
    )
    log = out.stdout + out.stderr
    assert all(v > 0 for v in _metric(log, "train", "kd_loss")) and _metric(log, "train", "kd_loss")
    assert not _metric(log, "valid", "kd_loss") and _metric(log, "valid", "nll_loss")
    assert (
        f"lskd: teacher cache {cache}: decoder features of 1 member(s)" in log
        and "lskd: teacher " + str(tiny_teacher) + ":" not in log
    )


def test_resume_continues_from_checkpoint_last(student_runs):
    log, save_dir = student_runs["second"], student_runs["save_dir"]
    assert re.search(
        rf"Loaded checkpoint {re.escape(str(save_dir))}/checkpoint_last.pt \(epoch \d+ @ 6 updates\)", log
    )
    inner = _metric(log, "train_inner", "num_updates") + _metric(log, "train", "num_updates")
    assert inner and min(inner) > 6 and max(inner) == 12
    assert _metric(log, "train", "kd_loss")


def test_student_checkpoint_holds_no_teacher(student_runs, tiny_mt_data):
    from lskd_plugins.fairseq_io import load_ensemble

    ckpt = student_runs["save_dir"] / "checkpoint_last.pt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    models, cfg, task = load_ensemble(str(ckpt), arg_overrides={"teacher_path": "/nonexistent/teacher.pt"})
    student = models[0]
    assert task.teachers is None  # loading a student never loads its teacher
    assert cfg.task._name == "lskd_translation"
    assert set(state["model"]) == set(student.state_dict())
    assert not [k for k in state["model"] if "teacher" in k]
    assert state["criterion"] is None
    optim = state["last_optimizer_state"]
    params = list(student.parameters())
    assert sum(len(g["params"]) for g in optim["param_groups"]) == len(params)
    assert len(optim["state"]) == len(params)
    assert sum(s["exp_avg"].numel() for s in optim["state"].values()) == sum(p.numel() for p in params)
    assert not state.get("task_state")


def test_generate_with_sacrebleu(student_runs, tiny_mt_data, env):
    ckpt = student_runs["save_dir"] / "checkpoint_last.pt"
    out = run_cli(
        [
            "fairseq-generate",
            tiny_mt_data.data_bin,
            "--user-dir",
            USER_DIR,
            "--task",
            "lskd_translation",
            "--path",
            ckpt,
            "--cpu",
            "--beam",
            "2",
            "--batch-size",
            "64",
            "--scoring",
            "sacrebleu",
        ],
        env,
    )
    log = out.stdout + out.stderr
    assert "lskd: teacher" not in log
    assert "Translated 40 sentences" in log
    m = re.search(r"Generate test with beam=2: BLEU = ([\d.]+)", log)
    assert m, log[-2000:]
    assert 0.0 <= float(m.group(1)) <= 100.0
    assert len(re.findall(r"^H-\d+\t", out.stdout, flags=re.M)) == 40


def test_alpha_zero_cli_matches_label_smoothed_cross_entropy(tiny_mt_data, tmp_path, env):
    logs = {}
    for name, crit in (
        (
            "ours",
            [
                "--user-dir",
                USER_DIR,
                "--task",
                "lskd_translation",
                "--criterion",
                "lskd_kd",
                "--kd-alpha",
                "0",
            ],
        ),
        ("fairseq", ["--criterion", "label_smoothed_cross_entropy"]),
    ):
        out = run_cli(
            [
                "fairseq-train",
                tiny_mt_data.data_bin,
                *TINY_ARCH,
                *TINY_TRAIN,
                *crit,
                "--label-smoothing",
                "0.1",
                "--max-update",
                "4",
                "--no-save",
                "--save-dir",
                tmp_path / name,
            ],
            env,
        )
        logs[name] = out.stdout + out.stderr
    assert "kd_loss" not in logs["ours"]
    for tag in ("train", "valid"):
        for metric in ("loss", "nll_loss", "ppl"):
            ours, theirs = _metric(logs["ours"], tag, metric), _metric(logs["fairseq"], tag, metric)
            assert ours and ours == theirs, (tag, metric)


def _assert_one_line_error(proc, message):
    assert proc.returncode == 2, proc.stderr[-2000:]  # lskd's usage-error code, also inside fairseq-train
    assert proc.stderr.strip().splitlines()[-1].startswith("lskd: error:")
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_missing_teacher_file(tiny_mt_data, tmp_path, env):
    missing = tmp_path / "nope.pt"
    proc = run_cli(
        [
            "fairseq-train",
            tiny_mt_data.data_bin,
            *TINY_ARCH,
            *TINY_TRAIN,
            *STUDENT,
            "--teacher-path",
            missing,
            "--max-update",
            "2",
            "--save-dir",
            tmp_path / "s",
        ],
        env,
        check=False,
    )
    _assert_one_line_error(proc, f"lskd: error: teacher checkpoint not found: {missing}")
    assert not (tmp_path / "s" / "checkpoint_last.pt").exists()


def test_missing_teacher_path_option(tiny_mt_data, tmp_path, env):
    proc = run_cli(
        [
            "fairseq-train",
            tiny_mt_data.data_bin,
            *TINY_ARCH,
            *TINY_TRAIN,
            *STUDENT,
            "--max-update",
            "2",
            "--save-dir",
            tmp_path / "s",
        ],
        env,
        check=False,
    )
    _assert_one_line_error(
        proc,
        "lskd: error: --criterion lskd_kd with --kd-alpha > 0 distils from a "
        "teacher: pass --teacher-path CKPT",
    )


def test_dictionary_mismatch_stops_before_training(tiny_mt_data, tiny_teacher, tmp_path, env):
    from fairseq.data import Dictionary

    from lskd_plugins.tasks.lskd_translation import dictionary_mismatch

    other_text = write_parallel_text(tmp_path / "text", n_train=80, seed=7)
    other_bin = preprocess(other_text, tmp_path / "bin", env)
    proc = run_cli(
        [
            "fairseq-train",
            other_bin,
            *TINY_ARCH,
            *TINY_TRAIN,
            *STUDENT,
            "--teacher-path",
            tiny_teacher,
            "--max-update",
            "2",
            "--save-dir",
            tmp_path / "s",
        ],
        env,
        check=False,
    )
    expected = [
        dictionary_mismatch(
            side,
            Dictionary.load(str(tiny_mt_data.data_bin / f"dict.{lang}.txt")),
            Dictionary.load(str(other_bin / f"dict.{lang}.txt")),
        )
        for side, lang in (("source", "en"), ("target", "de"))
    ]
    assert all(expected)  # the two corpora really have different dictionaries
    _assert_one_line_error(
        proc,
        f"lskd: error: teacher {tiny_teacher} does not share the student's "
        f"dictionaries: {expected[0]}; {expected[1]}. Fix: ",
    )
    assert "symbols, student" in expected[1] and "first difference at index" in expected[1]
    assert "begin training epoch" not in proc.stdout
    assert not (tmp_path / "s" / "checkpoint_last.pt").exists()


@pytest.mark.slow
def test_student_on_a_multi30k_slice_logs_kd_loss(shared_data, tmp_path, cli_env):
    """Real data: 3,000 Multi30k training pairs, a tiny LS teacher, a KD student (opt-in, slow)."""
    from fairseq_fixtures import train_teacher

    tok = shared_data / "multi30k" / "tok"
    if not (tok / "train.lc.norm.tok.en").is_file():
        pytest.skip(f"{tok} absent")
    text = tmp_path / "text"
    text.mkdir()
    for split, name, n in (
        ("train", "train", 3000),
        ("valid", "val", 300),
        ("test", "test_2016_flickr", 300),
    ):
        for lang in ("en", "de"):
            lines = (tok / f"{name}.lc.norm.tok.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (text / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data_bin = preprocess(
        text, tmp_path / "bin", cli_env, extra=["--thresholdsrc", "2", "--thresholdtgt", "2"]
    )
    teacher = train_teacher(data_bin, tmp_path / "teacher", cli_env, max_update=40)
    out = run_cli(
        [
            "fairseq-train",
            data_bin,
            *TINY_ARCH,
            *TINY_TRAIN,
            *STUDENT,
            "--teacher-path",
            teacher,
            "--max-update",
            "20",
            "--save-dir",
            tmp_path / "student",
        ],
        cli_env,
    )
    kd = _metric(out.stdout + out.stderr, "valid", "kd_loss")
    assert kd and kd[-1] > 0
