#!/usr/bin/env python
"""Cost of word-level KD: a plain label-smoothed training step vs an ``lskd_kd`` step, per KD method.

All steps run on the same batches with students of the same size and the same initial weights;
a KD step also runs a same-size online teacher (forward only, no gradients), as
``fairseq-train --task lskd_translation --criterion lskd_kd`` does, with each ``--kd-method`` of
``--methods`` (``lskd_kd`` is ``kd``; ``lskd_kd:logit_std``, ``lskd_kd:dkd`` the others). The kinds
of step alternate (order reversed every repetition) so that machine noise hits all alike; the
median over repetitions of the time for all batches is reported, with the ratio to the LS step,
and the peak memory of one step of each kind, with the ratio of each method's to ``kd``'s:

- CUDA: ``torch.cuda.max_memory_allocated`` during the step, above what was allocated before it;
- CPU: the peak resident set size during the step above the RSS before it (Linux
  ``/proc/self/status`` VmHWM, reset through ``/proc/self/clear_refs``; glibc's malloc is told
  to return large blocks to the system, and trimmed before each measurement, so that RSS
  follows torch's allocations).

    python benchmarks/kd_step.py                       # CPU, the paper's 2+2-layer transformer
    python benchmarks/kd_step.py --device cuda --dtype fp16 --batch-tokens 8192
    python benchmarks/kd_step.py --vocab 32000 --repeats 3  # the methods' memory at V = 32k
"""

import argparse
import copy
import ctypes
import functools
import json
import os
import statistics
import sys
import time

import torch

from lskd_plugins.errors import LskdError

DEFAULTS = dict(layers=2, embed_dim=256, ffn_dim=1024, heads=4, vocab=8000)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype",
        choices=["fp32", "fp16", "bf16"],
        default="fp32",
        help="model dtype (student and teacher); half types for timing only",
    )
    p.add_argument("--layers", type=int, default=DEFAULTS["layers"], help="encoder and decoder layers")
    p.add_argument("--embed-dim", type=int, default=DEFAULTS["embed_dim"])
    p.add_argument("--ffn-dim", type=int, default=DEFAULTS["ffn_dim"])
    p.add_argument("--heads", type=int, default=DEFAULTS["heads"])
    p.add_argument("--vocab", type=int, default=DEFAULTS["vocab"], help="joined dictionary size")
    p.add_argument("--batch-tokens", type=int, default=1024, help="target tokens per batch")
    p.add_argument("--length", type=int, default=25, help="source and target sentence length")
    p.add_argument("--batches", type=int, default=2, help="distinct batches per repetition")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--kd-alpha", type=float, default=0.9)
    p.add_argument("--kd-temperature", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument(
        "--methods", default="kd,logit_std,dkd", help="comma-separated --kd-method values to time (kd first)"
    )
    p.add_argument("--dkd-alpha", type=float, default=None, help="--kd-method dkd's (default 1.0)")
    p.add_argument("--dkd-beta", type=float, default=None, help="--kd-method dkd's (default 8.0)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p.parse_args(argv)


def run_name(method: str) -> str:
    return "lskd_kd" if method == "kd" else f"lskd_kd:{method}"


def build(args, device, dtype):
    """(task, student, teacher, ls criterion, {method: kd criterion}), fairseq's own classes."""
    from fairseq import options
    from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
    from fairseq.data import Dictionary
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from lskd_plugins.fairseq_io import register_plugins

    register_plugins()
    from lskd_plugins.criterions.lskd_kd import LskdKdCriterion
    from lskd_plugins.tasks.lskd_translation import LskdTranslationTask

    vocab = Dictionary()
    for i in range(args.vocab - vocab.nspecial):
        vocab.add_symbol(f"w{i}")
    parser = options.get_training_parser()
    fairseq_args = options.parse_args_and_arch(
        parser,
        [
            "unused-data-dir",
            "--task",
            "lskd_translation",
            "--arch",
            "transformer",
            "--encoder-layers",
            str(args.layers),
            "--decoder-layers",
            str(args.layers),
            "--encoder-embed-dim",
            str(args.embed_dim),
            "--decoder-embed-dim",
            str(args.embed_dim),
            "--encoder-ffn-embed-dim",
            str(args.ffn_dim),
            "--decoder-ffn-embed-dim",
            str(args.ffn_dim),
            "--encoder-attention-heads",
            str(args.heads),
            "--decoder-attention-heads",
            str(args.heads),
            "--share-all-embeddings",
            "--dropout",
            "0.3",
        ],
    )
    cfg = convert_namespace_to_omegaconf(fairseq_args)
    task = LskdTranslationTask(cfg.task, vocab, vocab)
    torch.manual_seed(args.seed)
    student = task.build_model(cfg.model).to(device=device, dtype=dtype)
    teacher = task.build_model(cfg.model).to(device=device, dtype=dtype)
    task.use_teachers([teacher])
    ls = LabelSmoothedCrossEntropyCriterion(task, False, args.label_smoothing)
    kd = {}
    for method in args.methods:
        dkd = dict(dkd_alpha=args.dkd_alpha, dkd_beta=args.dkd_beta) if method == "dkd" else {}
        kd[method] = LskdKdCriterion(
            task,
            False,
            kd_alpha=args.kd_alpha,
            kd_temperature=args.kd_temperature,
            label_smoothing=args.label_smoothing,
            kd_method=method,
            **dkd,
        )
    return task, student, teacher, ls, kd


def make_batches(args, vocab_size, pad, eos, nspecial, device):
    g = torch.Generator().manual_seed(args.seed + 1)
    bsz = max(1, args.batch_tokens // args.length)
    batches = []
    for _ in range(args.batches):
        src = torch.randint(nspecial, vocab_size, (bsz, args.length), generator=g)
        tgt = torch.randint(nspecial, vocab_size, (bsz, args.length), generator=g)
        src[:, -1] = eos
        tgt[:, -1] = eos
        prev = torch.cat([torch.full((bsz, 1), eos), tgt[:, :-1]], dim=1)
        batches.append(
            {
                "net_input": {
                    "src_tokens": src.to(device),
                    "prev_output_tokens": prev.to(device),
                    "src_lengths": torch.full((bsz,), args.length, device=device),
                },
                "target": tgt.to(device),
                "ntokens": int(tgt.ne(pad).sum()),
                "nsentences": bsz,
            }
        )
    return batches


def train_step(model, criterion, optimizer, sample):
    model.train()
    optimizer.zero_grad(set_to_none=True)
    loss, sample_size, _ = criterion(model, sample)
    (loss / sample_size).backward()
    optimizer.step()


class PeakMemory:
    """Peak extra memory of a block: CUDA allocator stats, or Linux peak RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.how = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS (VmHWM)"
        if device.type != "cuda":
            if not os.path.exists("/proc/self/clear_refs"):
                raise SystemExit("CPU peak memory needs Linux /proc/self/clear_refs")
            try:  # fixed mmap/trim thresholds: freed tensors go back to the OS, RSS follows usage
                self.libc = ctypes.CDLL("libc.so.6")
                self.libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD
                self.libc.mallopt(-1, 1 << 16)  # M_TRIM_THRESHOLD
            except OSError:
                self.libc = None

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def measure(self, fn) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            fn()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - base
        if self.libc is not None:
            self.libc.malloc_trim(0)  # free heap memory kept from earlier steps goes back first
        base = self._status("VmRSS:")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        fn()
        return self._status("VmHWM:") - base


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or args.methods[0] != "kd":
        raise LskdError("--methods must start with kd (the other methods' memory is compared with kd's)")
    task, student, teacher, ls, kd = build(args, device, dtype)
    vocab = task.target_dictionary
    batches = make_batches(args, len(vocab), vocab.pad(), vocab.eos(), vocab.nspecial, device)
    runs = {}
    for name, criterion in [("label_smoothed_cross_entropy", ls)] + [(run_name(m), c) for m, c in kd.items()]:
        model = copy.deepcopy(student)  # the same initial weights for every kind of step
        runs[name] = (model, criterion, torch.optim.Adam(model.parameters(), lr=1e-4))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def one_pass(name):
        model, criterion, optimizer = runs[name]
        sync()
        start = time.perf_counter()
        for sample in batches:
            train_step(model, criterion, optimizer, sample)
        sync()
        return time.perf_counter() - start

    names = list(runs)
    times = {n: [] for n in names}
    for rep in range(args.warmup + args.repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            elapsed = one_pass(name)
            if rep >= args.warmup:
                times[name].append(elapsed)
        print(
            f"repetition {rep + 1}/{args.warmup + args.repeats}{' (warm-up)' if rep < args.warmup else ''}",
            file=sys.stderr,
            flush=True,
        )

    memory = PeakMemory(device)
    peak = {}
    for name in names:
        step = functools.partial(train_step, *runs[name], batches[0])
        peak[name] = max(memory.measure(step) for _ in range(2))

    n_params = sum(p.numel() for p in student.parameters())
    tokens = sum(b["ntokens"] for b in batches)
    median = {n: statistics.median(times[n]) for n in names}
    ls_name = "label_smoothed_cross_entropy"
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "dtype": args.dtype,
        "threads": args.threads if device.type == "cpu" else None,
        "arch": {k: getattr(args, k) for k in ("layers", "embed_dim", "ffn_dim", "heads", "vocab")},
        "params_student": n_params,
        "params_teacher": sum(p.numel() for p in teacher.parameters()),
        "batch_tokens": batches[0]["ntokens"],
        "batches": args.batches,
        "repeats": args.repeats,
        "median_s_per_step": {n: median[n] / args.batches for n in names},
        "tokens_per_s": {n: tokens / median[n] for n in names},
        "ratio_kd_over_ls": median["lskd_kd"] / median[ls_name],
        "peak_step_memory_bytes": peak,
        "memory_measure": memory.how,
        "peak_memory_ratio": peak["lskd_kd"] / max(1, peak[ls_name]),
        "methods": args.methods,
        "time_ratio_over_ls": {n: median[n] / median[ls_name] for n in names},
        "peak_memory_ratio_over_kd": {m: peak[run_name(m)] / max(1, peak["lskd_kd"]) for m in args.methods},
    }
    print(
        f"device {result['device']} ({args.dtype}), transformer {args.layers}+{args.layers} layers, "
        f"embed {args.embed_dim}, ffn {args.ffn_dim}, heads {args.heads}, vocab {args.vocab}: "
        f"{n_params / 1e6:.2f}M parameters (student = teacher size)"
    )
    print(
        f"{args.batches} batches of {batches[0]['ntokens']} target tokens, {args.repeats} repetitions "
        f"(+{args.warmup} warm-up), median; peak memory = {memory.how} during one step"
    )
    print(f"{'step':<30} {'ms/step':>9} {'tokens/s':>10} {'peak MiB':>9} {'time/LS':>8}")
    for n in names:
        print(
            f"{n:<30} {1000 * median[n] / args.batches:>9.1f} {tokens / median[n]:>10.0f} "
            f"{peak[n] / 2**20:>9.1f} {result['time_ratio_over_ls'][n]:>7.2f}x"
        )
    print(
        f"KD / LS time ratio: {result['ratio_kd_over_ls']:.2f}x; peak memory ratio: "
        f"{result['peak_memory_ratio']:.2f}x"
    )
    for m in args.methods[1:]:
        print(
            f"{m} / kd: time {median[run_name(m)] / median['lskd_kd']:.2f}x, peak memory "
            f"{result['peak_memory_ratio_over_kd'][m]:.2f}x (vocab {args.vocab})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    from lskd_plugins.errors import run_script

    run_script(main)  # one-line errors and the project's exit codes, as every lskd script
