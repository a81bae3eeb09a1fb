"""fairseq's own multi-process training with the plugins, two CPU ranks (issue 11).

Each rank is its own ``fairseq-train`` process, started the way a multi-node launch starts them:
``--distributed-init-method tcp://127.0.0.1:PORT --distributed-rank R --distributed-world-size 2
--distributed-no-spawn``, with ``--distributed-backend gloo`` and ``--ddp-backend legacy_ddp``
(fairseq's spawn and torchrun paths count GPUs; torch's DDP wrapper, fairseq's default
``pytorch_ddp``, passes ``device_ids``, which a CPU module refuses). docs/multi_process.md gives
the GPU and multi-node commands this stands for.

Why one update of two ranks equals one update of one process with ``--update-freq 2``, exactly:
fairseq builds the same list of batches on every rank (same ``--max-tokens``, same seed for the
shuffle), then rank r takes batches r, r + N, r + 2N, ... and ``--update-freq k`` groups k
consecutive batches of a rank into one update. So update 1 is batches {0, 1} in both runs. The
legacy DDP wrapper divides each rank's summed gradient by the world size and all-reduces (sums)
it; the trainer then multiplies by world size / total sample size: (g0 + g1) / S, the same as
one process accumulating g0 + g1 and dividing by S. For two ranks the halving and doubling are
exact in floating point, so the weights agree to the last bit in practice (observed: max
difference 0.0); the test allows 1e-6 absolute. With all dropouts 0 and the same ``--seed``
both runs start from the same weights. Logged values are compared to one unit of the last
printed digit. The validation after the update (``--eval-bleu``, an odd number of batches, so
that rank 1 runs fairseq's dummy batch for the last one) must equal one process's too.

The optimiser is plain SGD (lr 0.5, no momentum), so the weights after the update are
w0 - lr * g: their distance from the initial weights, divided by lr, must equal the logged
gradient norm; Adam's first step (about lr * sign(g)) would hide the gradient's size.

Every process is bounded by a timeout and killed with its process group; only 127.0.0.1 and a
port free at run time are used (gloo's own connections are kept on the loopback interface).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from fairseq_fixtures import TINY_ARCH, USER_DIR

pytestmark = pytest.mark.fairseq

RUN_TIMEOUT_S = 180  # per launch; a healthy launch takes about 10-30 s on two shared cores
WEIGHT_ATOL = 1e-6
# One update of plain SGD, no dropout anywhere, then one validation with --eval-bleu in batches
# of 8 sentences; the KD student of the plugins.
VALID_BATCH = 8
TRAIN_ONE_UPDATE = (
    "--cpu --num-workers 0 --seed 1 --optimizer sgd --momentum 0 --weight-decay 0 --lr 0.5 "
    "--lr-scheduler fixed --dropout 0 --attention-dropout 0 --activation-dropout 0 --max-tokens 500 "
    f"--max-update 1 --batch-size-valid {VALID_BATCH} --eval-bleu --log-format simple --log-interval 1 "
    "--no-progress-bar --no-epoch-checkpoints"
).split() + ["--eval-bleu-args", '{"beam": 1, "max_len_a": 1.2, "max_len_b": 5}']
KD_STUDENT = (
    "--task lskd_translation --criterion lskd_kd --kd-alpha 0.9 --kd-temperature 2 --label-smoothing 0.1"
)
COMMON = [*TINY_ARCH, *TRAIN_ONE_UPDATE, "--user-dir", USER_DIR, *KD_STUDENT.split()]
DISTRIBUTED = ["--distributed-no-spawn", "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]
# One unit of the last digit fairseq prints (the round= of lskd_kd's reduce_metrics, of fairseq's
# trainer for gnorm, of its task for wpb/bsz, of the translation task for bleu): two equal values
# print the same or, at a rounding boundary, one unit apart.
PRINTED_UNIT = {
    "loss": 1e-3,
    "nll_loss": 1e-3,
    "ce_loss": 1e-3,
    "kd_loss": 1e-4,
    "teacher_nll_loss": 1e-3,
    "gnorm": 1e-3,
    "wpb": 0.1,
    "bsz": 0.1,
    "bleu": 1e-2,
}
TRAIN_COMPARED = ("loss", "nll_loss", "ce_loss", "kd_loss", "teacher_nll_loss", "wpb", "bsz", "gnorm")
VALID_COMPARED = ("loss", "nll_loss", "ce_loss", "kd_loss", "teacher_nll_loss", "bleu")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_interface() -> str:
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    return names[0] if names else "lo"


def start(cmds: list, env: dict, logs: list) -> list:
    """Start every command at once, each in its own process group with its output in its log."""
    procs = []
    for cmd, log in zip(cmds, logs):
        with open(log, "w") as out:
            procs.append(
                subprocess.Popen(
                    [str(c) for c in cmd],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return procs


def wait_or_kill(procs: list, timeout: float, grace: float) -> list:
    """Wait for every process; kill (whole group) those still running at ``timeout``, or ``grace``
    seconds after another one failed. Returns each exit code, None for a killed process."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.returncode not in (None, 0) for p in procs):
            deadline = min(deadline, time.monotonic() + grace)
        time.sleep(0.2)
    codes = [p.poll() for p in procs]
    for proc, code in zip(procs, codes):
        if code is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return codes


def launch_on_free_port(make_cmds, env: dict, logs: list, timeout: float = RUN_TIMEOUT_S) -> list:
    """Run ``make_cmds(port)`` (all at once) on a port free at run time: each command's exit code
    and log text. Again on another port (twice at most) when some other program took the port
    between the choice and the bind. Fails the test, with the logs' tails, when a process had to
    be killed: it still ran at ``timeout``, or 60 s after another process had failed."""
    for _ in range(3):
        codes = wait_or_kill(start(make_cmds(free_port()), env, logs), timeout, grace=60)
        texts = [Path(log).read_text() for log in logs]
        if not any("EADDRINUSE" in text for text in texts):
            break
    hung = [i for i, code in enumerate(codes) if code is None]
    if hung:
        tails = "\n".join(f"--- process {i} (exit {codes}):\n{texts[i][-2000:]}" for i in hung)
        raise AssertionError(f"processes {hung} did not finish by themselves and were killed\n{tails}")
    return list(zip(codes, texts))


def rank_command(data_bin, teacher, save_dir, rank: int, world: int, port: int) -> list:
    return [
        "fairseq-train",
        data_bin,
        *COMMON,
        "--teacher-path",
        teacher,
        "--save-dir",
        save_dir,
        "--distributed-world-size",
        str(world),
        "--distributed-rank",
        str(rank),
        "--distributed-init-method",
        f"tcp://127.0.0.1:{port}",
        *DISTRIBUTED,
    ]


def first_update(log: str) -> dict:
    """The key=value pairs of the ``train_inner`` line of update 1."""
    for line in log.splitlines():
        if "| train_inner |" in line and re.search(r"\bnum_updates=1\b", line):
            return {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.]+)", line.split("|")[-1])}
    raise AssertionError(f"no train_inner line for update 1 in:\n{log[-3000:]}")


def valid_stats(log: str) -> dict:
    """The ``key value`` pairs of the last ``valid`` line."""
    lines = [line for line in log.splitlines() if "| valid |" in line]
    assert lines, f"no valid line in:\n{log[-3000:]}"
    return {k: float(v) for k, v in re.findall(r"\| (\w+) ([-\d.]+)(?= \||$)", lines[-1])}


@pytest.fixture(scope="module")
def mp_env(cli_env):
    env = dict(cli_env)
    env["GLOO_SOCKET_IFNAME"] = loopback_interface()
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_mt_data, tiny_teacher, mp_env):
    """Two ranks (each with its own copy of the teacher) and one process with --update-freq 2,
    all started at once."""
    root = tmp_path_factory.mktemp("multiprocess")
    teachers = [root / f"teacher_rank{r}.pt" for r in range(2)]
    for t in teachers:
        shutil.copyfile(tiny_teacher, t)
    two, one = root / "two_ranks", root / "one_process"
    one_process = ["fairseq-train", tiny_mt_data.data_bin, *COMMON, "--teacher-path", tiny_teacher]
    one_process += ["--save-dir", one, "--update-freq", "2"]

    def commands(port):
        ranks = [rank_command(tiny_mt_data.data_bin, teachers[r], two, r, 2, port) for r in range(2)]
        return [*ranks, one_process]

    logs = [root / "rank0.log", root / "rank1.log", root / "one.log"]
    results = launch_on_free_port(commands, mp_env, logs)
    for code, text in results:
        assert code == 0, text[-3000:]
    return {"two": two, "one": one, "logs": [text for _, text in results], "teachers": teachers}


def test_two_ranks_log_what_one_process_logs(runs):
    rank0, _, one = runs["logs"]
    assert "distributed init (rank 0): tcp://127.0.0.1:" in rank0
    two_stats, one_stats = first_update(rank0), first_update(one)
    for key in TRAIN_COMPARED:
        assert two_stats[key] == pytest.approx(one_stats[key], abs=PRINTED_UNIT[key] * 1.01), key
    assert two_stats["kd_loss"] > 0


def test_validation_on_two_ranks_equals_one_process(runs, tiny_mt_data):
    """Validation sums over all ranks: the same losses and BLEU as one process. With an odd number
    of validation batches, rank 1 runs fairseq's dummy batch for the last one (counted as 0)."""
    n_valid = len((tiny_mt_data.text_dir / "valid.en").read_text().splitlines())
    batches = math.ceil(n_valid / VALID_BATCH)
    assert batches % 2 == 1, "the fixture should give rank 1 a dummy validation batch"
    two, one = valid_stats(runs["logs"][0]), valid_stats(runs["logs"][2])
    for key in VALID_COMPARED:
        assert two[key] == pytest.approx(one[key], abs=PRINTED_UNIT[key] * 1.01), key
    assert two["kd_loss"] > 0
    # bsz is per validation step: 2 ranks take ceil(batches / 2) steps, one process takes batches.
    assert two["bsz"] == pytest.approx(n_valid / math.ceil(batches / 2), abs=0.051)
    assert one["bsz"] == pytest.approx(n_valid / batches, abs=0.051)


def test_each_rank_loads_its_own_teacher(runs):
    rank0, rank1, _ = runs["logs"]
    assert f"lskd: teacher {runs['teachers'][0]}: TransformerModel" in rank0
    assert str(runs["teachers"][1]) not in rank0  # rank 0 never reads rank 1's path
    assert "initialized host" in rank1 and "as rank 1" in rank1
    # Rank 1 logs only warnings (fairseq lowers non-master ranks to WARNING). Its teacher shows
    # in three places: its KD term enters the aggregated kd_loss compared above; the run would
    # have stopped had its teacher's fingerprint differed from rank 0's; and
    # test_rank_without_teacher_stops_every_rank shows that it reads its own --teacher-path.


def test_only_rank_zero_warns_of_a_student_that_starts_as_its_teacher(runs):
    """Same --seed and architecture as the tiny teacher: lskd_plugins/fingerprint.py's one line, on
    rank 0 only (the legacy_ddp wrapper's ``module.`` prefix does not hide the match)."""
    rank0, rank1, one = runs["logs"]
    assert rank0.count("lskd: warning: the student starts from the same initial weights") == 1
    assert "the same initial weights" not in rank1
    assert one.count("lskd: warning: the student starts from the same initial weights") == 1


def _student_weights(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["model"]


def test_weights_after_one_update_equal_one_process(runs):
    two = _student_weights(runs["two"] / "checkpoint_last.pt")
    one = _student_weights(runs["one"] / "checkpoint_last.pt")
    assert set(two) == set(one)
    worst = max((two[k].double() - one[k].double()).abs().max().item() for k in two)
    assert worst <= WEIGHT_ATOL, f"max |w(2 ranks) - w(1 process)| = {worst}"
    assert not (runs["two"] / "checkpoint_last.pt").samefile(runs["one"] / "checkpoint_last.pt")


def _initial_student(ckpt: Path):
    """The student fairseq built before update 1: same seed, same config (fairseq_cli.train)."""
    from fairseq import checkpoint_utils, tasks, utils

    from lskd_plugins.fairseq_io import register_plugins

    register_plugins()
    cfg = checkpoint_utils.load_checkpoint_to_cpu(str(ckpt))["cfg"]
    task = tasks.setup_task(cfg.task)
    utils.set_torch_seed(cfg.common.seed)
    return task.build_model(cfg.model)


def test_update_is_lr_times_logged_gradient(runs):
    """||w1 - w0|| / lr equals the gradient norm fairseq logged: the update is the one compared."""
    ckpt = runs["two"] / "checkpoint_last.pt"
    after = _student_weights(ckpt)
    # named_parameters, not state_dict: the shared embedding is one parameter under three keys.
    before = dict(_initial_student(ckpt).named_parameters())
    step = torch.sqrt(sum(((after[k].double() - p.double()) ** 2).sum() for k, p in before.items()))
    gnorm = first_update(runs["logs"][0])["gnorm"]
    assert step.item() / 0.5 == pytest.approx(gnorm, abs=1.01e-3)
    assert gnorm > 0.01


def test_two_ranks_from_a_teacher_cache_make_the_online_update(
    runs, tmp_path, tiny_mt_data, tiny_teacher, mp_env
):
    """The features cache under fairseq's multi-process training: each rank looks its own
    sentences up by id, so two ranks reading the cache make the update that one process with the
    online teacher makes, within the cache's float16 rounding (1e-3 of the update)."""
    from lskd_plugins.cli import main as lskd

    cache, save = tmp_path / "cache", tmp_path / "two_cached"
    argv = ["cache-teacher", "--data", tiny_mt_data.data_bin, "--path", tiny_teacher, "--output", cache]
    assert lskd([str(a) for a in argv] + ["--no-progress"]) == 0

    def commands(port):
        cmds = [rank_command(tiny_mt_data.data_bin, tiny_teacher, save, r, 2, port) for r in range(2)]
        for cmd in cmds:
            i = cmd.index("--teacher-path")
            cmd[i : i + 2] = ["--teacher-cache", cache]
        return cmds

    results = launch_on_free_port(commands, mp_env, [tmp_path / f"rank{r}.log" for r in range(2)])
    for code, text in results:
        assert code == 0, text[-3000:]
    cached = _student_weights(save / "checkpoint_last.pt")
    online = _student_weights(runs["one"] / "checkpoint_last.pt")
    before = dict(_initial_student(save / "checkpoint_last.pt").named_parameters())

    def norm(diffs):
        return torch.sqrt(sum((d.double() ** 2).sum() for d in diffs)).item()

    update = norm(online[k].double() - p.double() for k, p in before.items())
    apart = norm(cached[k].double() - online[k].double() for k in before)
    assert update > 1e-3 and apart <= 1e-3 * update, (apart, update)


def test_saved_student_holds_no_teacher(runs, tiny_teacher):
    state = torch.load(runs["two"] / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    student = _initial_student(runs["two"] / "checkpoint_last.pt")
    teacher = torch.load(tiny_teacher, map_location="cpu", weights_only=False)["model"]
    assert set(state["model"]) == set(student.state_dict())
    assert not [k for k in state["model"] if "teacher" in k]
    assert state["criterion"] is None
    n_student = sum(p.numel() for p in student.parameters())
    assert sum(v.numel() for v in state["model"].values()) < n_student + sum(
        v.numel() for v in teacher.values()
    )
    assert len(state["last_optimizer_state"]["param_groups"][0]["params"]) == len(list(student.parameters()))
    assert not state.get("task_state")


def test_rank_without_teacher_stops_every_rank(tmp_path, tiny_mt_data, tiny_teacher, mp_env):
    """Rank 1 reads its own --teacher-path: a missing one stops rank 1 with one line, and rank 0
    (whose teacher exists) with one line naming rank 1, instead of waiting 30 minutes."""
    missing = tmp_path / "no_such_teacher.pt"

    def commands(port):
        return [
            rank_command(tiny_mt_data.data_bin, teacher, tmp_path / "save", r, 2, port)
            for r, teacher in enumerate([tiny_teacher, missing])
        ]

    logs = [tmp_path / "r0.log", tmp_path / "r1.log"]
    (code0, log0), (code1, log1) = launch_on_free_port(commands, mp_env, logs, timeout=120)
    assert code0 == 2 and code1 == 2, (code0, code1)  # lskd usage-error code on both ranks
    last0, last1 = log0.strip().splitlines()[-1], log1.strip().splitlines()[-1]
    assert last1 == f"lskd: error: teacher checkpoint not found: {missing}"
    assert (
        last0
        == f"lskd: error: loading the teacher failed on rank 1 of 2: teacher checkpoint not found: {missing}"
    )
    assert "Traceback" not in log0 + log1
    assert not (tmp_path / "save" / "checkpoint_last.pt").exists()


def test_rank_failure_messages():
    from lskd_plugins.errors import LskdError
    from lskd_plugins.ranks import describe, failure_message, on_every_rank

    assert failure_message("loading", [None, None]) is None
    assert failure_message("loading", [None, "gone", "bad"]) == (
        "loading failed on rank 1 of 3 (and 1 other rank(s)): gone"
    )
    assert describe(LskdError("teacher x not found")) == "teacher x not found"
    assert describe(ValueError("first\nsecond")) == "ValueError: first"
    assert on_every_rank(lambda: 5, "loading") == 5  # no process group: just the step
    with pytest.raises(LskdError, match="^lskd: error: no$"):
        on_every_rank(lambda: (_ for _ in ()).throw(LskdError("no")), "loading")


def test_torchrun_processes_that_train_alone_are_stopped():
    from lskd_plugins.errors import LskdError
    from lskd_plugins.ranks import check_joined_launcher, launched_world_size

    assert launched_world_size({}) == 1 and launched_world_size({"WORLD_SIZE": "x"}) == 1
    check_joined_launcher({})  # a plain single-process run
    check_joined_launcher({"WORLD_SIZE": "1"})
    with pytest.raises(LskdError) as err:
        check_joined_launcher({"WORLD_SIZE": "2", "RANK": "1"})  # this test process joined no group
    assert str(err.value).startswith("lskd: error: torchrun started 2 processes (WORLD_SIZE=2) but this ")
    assert "trains alone" in str(err.value) and "--distributed-world-size 2" in str(err.value)


def test_teacher_fingerprint_tells_checkpoints_apart():
    from lskd_plugins.ranks import difference_message, fingerprint, same_on_every_rank

    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert fingerprint([a]) == fingerprint([b])
    with torch.no_grad():
        b.bias[1] = torch.nextafter(b.bias[1], torch.tensor(1.0))  # one ulp on one weight
    assert fingerprint([a]) != fingerprint([b])
    assert fingerprint([a]) != fingerprint([a.to(torch.float64)])
    assert fingerprint([a, b]) != fingerprint([b, a])  # an ensemble's order matters
    assert difference_message("the teacher", ["x", "x"]) is None
    assert difference_message("the teacher", ["x", "x", "y"]) == (
        "the teacher differs between ranks: rank 0 has x, rank 2 has y"
    )
    same_on_every_rank(lambda: 1 / 0, "the teacher", "fix")  # one process: not even computed
