#!/usr/bin/env python
"""Word-level KD from a teacher cache vs online vs plain training, on Multi30k en-de.

Pinned setting: Multi30k task 1 from ``$LSKD_SHARED_DATA/multi30k/raw`` (default ``../shared/data``)
prepared by ``lskd_plugins.nmt.prepare`` (joint sentencepiece 8000, joined dictionary); the paper's
2+2-layer, 256-wide transformer (FFN 1024, 4 heads, shared embeddings) for teachers and student. It
trains (or reuses, under ``benchmarks/.cache/<key>``) an LS (eps 0.1) and a non-LS teacher and a KD
student (online, from the LS teacher, T = 1) with fairseq-train for a fixed number of updates,
caches both teachers on the validation set (``lskd cache-teacher --subset valid``: the exact
features store, and top-k stores with K = 8 and 32), then measures side by side in one process,
alternating the order every repetition, median of repeats, on the same batches of validation
sentences:

- t_plain: a plain label-smoothed training step (fairseq's label_smoothed_cross_entropy);
- t_fwd: the teacher's forward alone (no gradients);
- t_online: an lskd_kd step with the online teacher; t_cached_feat, t_cached_kK: an lskd_kd step
  from the features cache and from each top-k cache;
- the peak memory of each step (kd_step.py's PeakMemory: CUDA allocator or peak RSS), after the
  timing and one warm-up call per step, median of 4 alternating measurements;
- the relative error of the cached KL against the exact online one, summed over the validation
  set, with the trained student, for both teachers at T = 1, 2, 3, 64:
  |sum(KL_cached) - sum(KL_online)| / sum(KL_online) and sum|KL_cached - KL_online| / sum(KL_online);
  and each cache's floor: the cached KL of the teacher against itself (the exact KL is 0; for a
  top-k cache the flat tail's r * KL(uniform || p_tail / r), which no student can remove; for the
  features cache the float16 rounding), mean per token;
- disk bytes per target token of the cache files.

The last line is ``ratio_cached_vs_plain=X ratio_online_vs_plain=W floor=F mem_online_vs_plain=M
kl_rel_err=Z`` with F = 1 + t_fwd / t_plain, X = t_cached_feat / t_plain and Z = sum|KL_c -
KL_o| / sum KL_o for the LS teacher at T = 2, both of the features cache (the default store); the
top-k caches' figures are in the tables above it. What the cache costs in BLEU is measured on
trained students by ``benchmarks/cache_bleu.py`` (two studies that differ only in
``translation.teacher_cache``).

    nice python benchmarks/teacher_cache.py      # short schedules: about 20 minutes on 2 shared CPU cores
    python benchmarks/teacher_cache.py --device cuda --teacher-updates 4000 --student-updates 2000 \\
        --train-max-tokens 4096 --lr 5e-4 --warmup-updates 4000
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
ARCH = [
    "--arch", "transformer", "--share-all-embeddings",
    "--encoder-layers", "2", "--decoder-layers", "2",
    "--encoder-embed-dim", "256", "--decoder-embed-dim", "256",
    "--encoder-ffn-embed-dim", "1024", "--decoder-ffn-embed-dim", "1024",
    "--encoder-attention-heads", "4", "--decoder-attention-heads", "4",
]  # fmt: skip
LS_TEACHER = ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing"]
KD_STUDENT = [
    "--task", "lskd_translation", "--criterion", "lskd_kd", "--kd-alpha", "0.9", "--kd-temperature", "1",
]  # fmt: skip
TEMPS = (1.0, 2.0, 3.0, 64.0)
FEATURES = "features"  # the exact store; top-k stores are named by their K


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    shared = os.environ.get("LSKD_SHARED_DATA") or REPO / ".." / "shared" / "data"  # as in tests/conftest.py
    p.add_argument("--raw-dir", default=str(Path(shared) / "multi30k" / "raw"))
    p.add_argument("--cache-root", default=str(REPO / "benchmarks" / ".cache"), help="keyed reuse folder")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for training and timing")
    p.add_argument("--teacher-updates", type=int, default=40)
    p.add_argument("--student-updates", type=int, default=25)
    p.add_argument("--train-max-tokens", type=int, default=1536)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (inverse_sqrt)")
    p.add_argument("--warmup-updates", type=int, default=10)
    p.add_argument("--batch-tokens", type=int, default=1024, help="target tokens per timed batch")
    p.add_argument("--batches", type=int, default=2, help="distinct batches per repetition")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--topk", default="8,32", help="top-k caches measured beside the features cache")
    p.add_argument("--kl-batches", type=int, default=0, help="validation batches for the KL error (0: all)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    given = p.add_argument_group("your own checkpoints instead of the pinned training (all four together)")
    given.add_argument("--data-bin", help="the data-bin the checkpoints were trained on")
    given.add_argument("--teacher-ls", help="LS teacher checkpoint")
    given.add_argument("--teacher-nols", help="non-LS teacher checkpoint")
    given.add_argument("--student", help="a student checkpoint of the same dictionaries")
    return p.parse_args(argv)


# -- artefacts: data, teachers, student, caches (reused under a keyed folder) ---------------------------
def keyed(root: Path, name: str, settings: dict) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return root / f"{name}-{key}"


def run(cmd, log: Path) -> None:
    """A CLI step; its output goes to ``log``; a failure stops the benchmark with the log's tail."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "w") as f:
        proc = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{log.read_text()[-3000:]}")


def prepare_data(args) -> Path:
    """The repository's own Multi30k preparation (``lskd prepare-mt``), reused when done."""
    from lskd_plugins.cli import main as lskd

    out = Path(args.cache_root) / "multi30k_spm8000"
    argv = ["prepare-mt", "--layout", "multi30k", "--raw-dir", args.raw_dir, "--output", str(out)]
    if lskd(argv + ["--vocab-size", "8000", "--no-progress"]):
        raise SystemExit("Multi30k preparation failed")
    return out / "data-bin"


def train(args, data_bin: Path, name: str, extra, updates: int, seed: int = 1) -> Path:
    """fairseq-train of the pinned arch; reused when the same settings already ran to the end."""
    cmd_tail = [
        *ARCH, "--dropout", "0.3", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)",
        "--lr", str(args.lr), "--lr-scheduler", "inverse_sqrt", "--warmup-updates", str(args.warmup_updates),
        "--max-tokens", str(args.train_max_tokens), "--max-update", str(updates), "--seed", str(seed),
        "--num-workers", "0", "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "50",
        "--no-progress-bar", "--disable-validation", "--user-dir", REPO / "lskd_plugins", *extra,
    ]  # fmt: skip
    if args.device == "cpu":
        cmd_tail.append("--cpu")
    settings = {"data": str(data_bin), "cmd": [str(c) for c in cmd_tail]}
    save = keyed(Path(args.cache_root), name, settings)
    ckpt = save / "checkpoint_last.pt"
    if not (save / "done").is_file():
        save.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        run(["fairseq-train", data_bin, "--save-dir", save, *cmd_tail], save / "train.log")
        (save / "done").write_text(f"{time.perf_counter() - start:.1f}\n")
    print(
        f"  {name}: {ckpt} ({updates} updates, trained in {float((save / 'done').read_text()):.0f} s)",
        flush=True,
    )
    return ckpt


def label(k) -> str:
    """A cache's name in the tables: 'feat' (the exact features store) or 'k8', 'k32' (top-k)."""
    return "feat" if k == FEATURES else f"k{k}"


def cache(args, data_bin: Path, teacher: Path, k, subset: str) -> Path:
    """``lskd cache-teacher`` of ``teacher`` on ``subset``: the features store (k = FEATURES) or top-k."""
    from lskd_plugins.cli import main as lskd

    settings = {"teacher": str(teacher), "data": str(data_bin), "format": 2}
    out = keyed(Path(args.cache_root), f"cache-{subset}-{label(k)}", settings)
    argv = ["cache-teacher", "--data", str(data_bin), "--path", str(teacher), "--output", str(out)]
    if k == FEATURES:
        argv += ["--store", "features"]
    else:
        argv += ["--store", "topk", "--topk", str(k), "--temperatures", ",".join(map(str, TEMPS))]
    if lskd(argv + ["--subset", subset, "--no-progress", "--device", args.device]) != 0:
        raise SystemExit(f"lskd cache-teacher failed for {teacher}")
    return out


# -- measurement ------------------------------------------------------------------------------------------
def load_all(data_bin: Path, teachers: dict, student_ckpt: Path, device):
    """(student, {name: teacher}, a template task) on ``device``, the validation subset loaded."""
    from lskd_plugins.fairseq_io import load_ensemble
    from lskd_plugins.tasks.lskd_translation import load_teacher

    models, _, task = load_ensemble(
        str(student_ckpt), arg_overrides={"data": str(data_bin), "teacher_path": ""}
    )
    task.load_dataset("valid")
    src, tgt = task.cfg.source_lang, task.cfg.target_lang
    loaded = {
        n: load_teacher(str(p), task.src_dict, task.tgt_dict, src, tgt).to(device)
        for n, p in teachers.items()
    }
    return models[0].to(device), loaded, task


def new_task(template):
    from lskd_plugins.tasks.lskd_translation import LskdTranslationTask

    task = LskdTranslationTask(copy.deepcopy(template.cfg), template.src_dict, template.tgt_dict)
    task.datasets["valid"] = template.dataset("valid")
    return task


def build_steps(student, teacher, template, caches: dict, device):
    """name -> a zero-argument step per batch: plain LS, teacher forward, online KD, cached KD per K."""
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
    from kd_step import train_step

    from lskd_plugins.criterions.lskd_kd import LskdKdCriterion

    def kd_criterion(task):
        return LskdKdCriterion(task, False, kd_alpha=0.9, kd_temperature=1.0, label_smoothing=0.1)

    def with_student(criterion):
        model = copy.deepcopy(student).to(device)
        return functools.partial(train_step, model, criterion, torch.optim.Adam(model.parameters(), lr=1e-5))

    online = new_task(template)
    online.use_teachers([teacher])
    steps = {
        "plain": with_student(LabelSmoothedCrossEntropyCriterion(new_task(template), False, 0.1)),
        "teacher_fwd": lambda sample: teacher_forward(teacher, sample),
        "online": with_student(kd_criterion(online)),
    }
    for k, folder in caches.items():
        task = new_task(template)
        task.use_cache(str(folder), "valid")
        steps[f"cached_{label(k)}"] = with_student(kd_criterion(task))
    return steps


def teacher_forward(teacher, sample):
    with torch.no_grad():
        teacher(**sample["net_input"])


def valid_batches(task, max_tokens: int, n: int | None, device):
    from fairseq import utils

    itr = task.get_batch_iterator(dataset=task.dataset("valid"), max_tokens=max_tokens, seed=1)
    batches = []
    for sample in itr.next_epoch_itr(shuffle=n is not None):
        batches.append(utils.move_to_cuda(sample, device=device) if device.type == "cuda" else sample)
        if n is not None and len(batches) == n:
            break
    return batches


def alternating(names: list, repeats: int):
    """(repetition, name) pairs: every name once per repetition, the order reversed every other one."""
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            yield rep, name


def time_steps(steps: dict, batches, args, device) -> dict:
    """Median over repeats of the time for all batches; order alternates every repetition."""
    names, times = list(steps), {n: [] for n in steps}
    reps = args.warmup + args.repeats

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for rep, name in alternating(names, reps):
        sync()
        start = time.perf_counter()
        for sample in batches:
            steps[name](sample)
        sync()
        if rep >= args.warmup:
            times[name].append(time.perf_counter() - start)
        if name == names[-1 if rep % 2 == 0 else 0]:
            print(f"  timing repetition {rep + 1}/{reps}", file=sys.stderr, flush=True)
    return {n: statistics.median(t) / len(batches) for n, t in times.items()}


def peak_memory(steps: dict, sample, device) -> dict:
    """Peak extra memory per step, after the timing: PeakMemory fixes malloc's thresholds (which
    slows large allocations, so it is not active while timing), one warm-up call of every step
    under them, then the median of 4 measurements in alternating order."""
    from kd_step import PeakMemory

    memory = PeakMemory(device)
    for step in steps.values():
        step(sample)
    peaks = {name: [] for name in steps}
    for _, name in alternating(list(steps), 4):
        peaks[name].append(memory.measure(functools.partial(steps[name], sample)))
    return {name: statistics.median(p) for name, p in peaks.items()}


def kl_errors(student, teacher, task, folders: dict, device, n_batches: int = 0) -> dict:
    """{(K, T): [sum KL_online, sum KL_cached, sum |KL_cached - KL_online|, sum KL_cached(teacher,
    teacher), tokens]} over the validation set, one pass of student and teacher for every K and T."""
    from lskd_plugins.kd_loss import ProjectedFeatureTeacher, kd_loss_per_position
    from lskd_plugins.nmt.teacher_cache import TeacherCache, data_identity

    cfg, valid = task.cfg, task.dataset("valid")
    identity = data_identity(cfg.data, "valid", cfg.source_lang, cfg.target_lang, valid, task.tgt_dict)
    caches = {k: TeacherCache(folder, "valid") for k, folder in folders.items()}
    for c in caches.values():
        c.check_data(identity)
    pad, vocab = task.tgt_dict.pad(), len(task.tgt_dict)
    sums = {(k, t): [0.0, 0.0, 0.0, 0.0, 0] for k in caches for t in TEMPS}
    student.eval()
    with torch.no_grad():
        for sample in valid_batches(task, 1024, None, device)[: n_batches or None]:
            logits, target = student(**sample["net_input"])[0], sample["target"]
            features = teacher(**sample["net_input"], features_only=True)[0]
            online = ProjectedFeatureTeacher([features], [teacher.output_layer], vocab)
            t_logits = teacher.output_layer(features)
            cached = {k: c.teacher_for(sample["id"], target, pad) for k, c in caches.items()}
            for t in TEMPS:
                kw = dict(kd_alpha=1.0, temperature=t, ignore_index=pad)
                kl_o = kd_loss_per_position(logits, target, online, **kw)["kd_loss"].double()
                for k, source in cached.items():
                    kl_c = kd_loss_per_position(logits, target, source, **kw)["kd_loss"].double()
                    floor = kd_loss_per_position(t_logits, target, source, **kw)["kd_loss"].double()
                    parts = (kl_o.sum(), kl_c.sum(), (kl_c - kl_o).abs().sum(), floor.sum())
                    for i, v in enumerate(parts):
                        sums[(k, t)][i] += float(v)
                    sums[(k, t)][4] += int(target.ne(pad).sum())
    return sums


def disk_bytes_per_token(folder: Path) -> float:
    header = json.loads((folder / "header.json").read_text())
    return sum(p.stat().st_size for p in folder.glob("valid.*.npy")) / header["data"]["tokens"]


def report(result: dict) -> None:
    """The table, then the one-line summary (the last line)."""
    t, mem = result["s_per_step"], result["peak_bytes"]
    print(f"\ndevice {result['device']}, {result['threads']} threads; {result['setting']}")
    print(f"{'step':<14} {'ms/step':>9} {'x plain':>8} {'peak MiB':>9} {'x plain':>8}")
    for name in t:
        print(
            f"{name:<14} {1000 * t[name]:>9.1f} {t[name] / t['plain']:>8.3f} "
            f"{mem[name] / 2**20:>9.1f} {mem[name] / max(1, mem['plain']):>8.3f}"
        )
    head = ("teacher", "K", "T", "sum KL online", "sum KL cached", "|sum diff|/sum", "sum|diff|/sum")
    head += ("KL/tok", "floor/tok")
    print("\n{:<8} {:>4} {:>5} {:>14} {:>14} {:>15} {:>14} {:>10} {:>10}".format(*head))
    for row in result["kl"]:
        k = "feat" if row["k"] == FEATURES else row["k"]
        print(
            f"{row['teacher']:<8} {k:>4} {row['T']:>5g} {row['online']:>14.2f} {row['cached']:>14.2f} "
            f"{row['rel_err_of_sum']:>15.5f} {row['rel_err_per_token']:>14.5f} "
            f"{row['kl_online_per_token']:>10.4f} {row['tail_floor_per_token']:>10.4f}"
        )
    for k, b in result["disk_bytes_per_token"].items():
        name = "features" if k == FEATURES else f"top-k K={k}"
        print(f"disk: {name}: {b:.1f} bytes per target token (valid subset, offsets included)")
    s = result["summary"]
    print(
        f"ratio_cached_vs_plain={s['X']:.3f} ratio_online_vs_plain={s['W']:.3f} floor={s['F']:.3f} "
        f"mem_online_vs_plain={s['M']:.3f} kl_rel_err={s['Z']:.5f}"
    )


def kl_rows(student, teachers: dict, template, caches: dict, device, n_batches: int) -> list:
    rows = []
    for name, teacher in teachers.items():
        sums = kl_errors(student, teacher, template, caches[name], device, n_batches)
        for (k, t), (online, cached, absdiff, floor, tokens) in sums.items():
            rel_sum, rel_tok = abs(cached - online) / online, absdiff / online
            rows.append(
                dict(
                    teacher=name,
                    k=k,
                    T=t,
                    online=online,
                    cached=cached,
                    rel_err_of_sum=rel_sum,
                    rel_err_per_token=rel_tok,
                    kl_online_per_token=online / tokens,
                    tail_floor_per_token=floor / tokens,
                )
            )
    return rows


def artefacts(args):
    """(data-bin, {LS, noLS: teacher checkpoint}, student checkpoint, {teacher: {K: valid cache}})."""
    given = [args.data_bin, args.teacher_ls, args.teacher_nols, args.student]
    if any(given) and not all(given):
        raise SystemExit("--data-bin, --teacher-ls, --teacher-nols and --student go together")
    if all(given):
        data_bin, student = Path(args.data_bin), Path(args.student)
        teachers = {"LS": Path(args.teacher_ls), "noLS": Path(args.teacher_nols)}
    else:
        print("artefacts (trained once, reused under a keyed folder):", flush=True)
        data_bin = prepare_data(args)
        teachers = {
            "LS": train(args, data_bin, "teacher-ls", [*LS_TEACHER, "0.1"], args.teacher_updates),
            "noLS": train(args, data_bin, "teacher-nols", [*LS_TEACHER, "0"], args.teacher_updates),
        }
        kd = [*KD_STUDENT, "--teacher-path", teachers["LS"]]
        student = train(args, data_bin, "student-kd", kd, args.student_updates)
    ks = [FEATURES] + [int(k) for k in args.topk.split(",") if k.strip()]
    caches = {n: {k: cache(args, data_bin, p, k, "valid") for k in ks} for n, p in teachers.items()}
    return data_bin, teachers, student, caches


def describe(args, batches) -> str:
    tokens = sum(b["ntokens"] for b in batches)
    timing = (
        f"{args.batches} validation batches of ~{args.batch_tokens} target tokens ({tokens} tokens), "
        f"median of {args.repeats} repeats (+{args.warmup} warm-up), alternating order; KD alpha 0.9, T 1"
    )
    if args.student:
        return (
            f"given checkpoints: data {args.data_bin}, LS teacher {args.teacher_ls}, non-LS teacher "
            f"{args.teacher_nols}, student {args.student}; {timing}"
        )
    return (
        f"Multi30k en-de, spm 8000 joined; transformer 2+2, 256/1024/4 heads; teachers "
        f"{args.teacher_updates} updates, KD student {args.student_updates} updates (max-tokens "
        f"{args.train_max_tokens}, lr {args.lr}); {timing}"
    )


def measure(args, data_bin, teachers, student_ckpt, caches, device) -> dict:
    student, loaded, template = load_all(data_bin, teachers, student_ckpt, device)
    batches = valid_batches(template, args.batch_tokens, args.batches, device)
    steps = build_steps(student, loaded["LS"], template, caches["LS"], device)
    seconds = time_steps(steps, batches, args, device)
    peak = peak_memory(steps, batches[0], device)
    rows = kl_rows(student, loaded, template, caches, device, args.kl_batches)
    z_row = next(r for r in rows if r["teacher"] == "LS" and r["k"] == FEATURES and r["T"] == 2.0)
    return dict(
        device=str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        threads=args.threads,
        setting=describe(args, batches),
        s_per_step=seconds,
        peak_bytes=peak,
        kl=rows,
        disk_bytes_per_token={k: disk_bytes_per_token(f) for k, f in caches["LS"].items()},
        summary=dict(
            X=seconds["cached_feat"] / seconds["plain"],
            W=seconds["online"] / seconds["plain"],
            F=1 + seconds["teacher_fwd"] / seconds["plain"],
            M=peak["online"] / max(1, peak["plain"]),
            Z=z_row["rel_err_per_token"],
        ),
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    data_bin, teachers, student_ckpt, caches = artefacts(args)
    result = measure(args, data_bin, teachers, student_ckpt, caches, device)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
    report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
