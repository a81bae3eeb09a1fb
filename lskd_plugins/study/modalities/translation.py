"""The translation modality of the study: ``fairseq-train`` teachers and baseline (fairseq's
``label_smoothed_cross_entropy``), word-level / sequence-level / sequence + word-level students
(``--user-dir lskd_plugins --task lskd_translation --criterion lskd_kd``, ``lskd seqkd``), scored
by ``lskd bleu`` on every test set of the data-bin; the diffusion analysis through ``lskd
diffusion nmt``. The data: a fairseq data-bin, or the embedded corpus of ``lskd synth-mt``."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List

from lskd_plugins.errors import LskdError
from lskd_plugins.strict_yaml import is_int
from lskd_plugins.study import kinds, layout
from lskd_plugins.study.config import SECTION_FIXED_TEACHERS, _dict, _is_prepare, _num, _str, section_methods
from lskd_plugins.study.grid import Run, diffusion_runs, merged, methods, reads, seed_range, teacher_seeds
from lskd_plugins.study.modalities.base import Metric, Modality, one_line_errors, options_argv

PLUGINS = str(Path(__file__).resolve().parents[2])
KINDS = ("seq", "word", "seqword")  # this modality's kinds, in the grid's order
TEACHER_CACHE_STORE = "features"  # lskd cache-teacher's exact store; its name is in the students' keys
CACHE_DIR = f"cache-{TEACHER_CACHE_STORE}"  # per teacher run folder; a version-1 top-k cache lived in "cache"

SECTION = {
    "data": (
        "synth",
        _str,
        "a path or 'synth'",
        "fairseq data-bin (joined dictionary); 'synth': the embedded corpus of lskd synth-mt",
    ),
    "synth": (
        {"size": 4000, "valid": 200, "test": 200, "seed": 1},
        _dict,
        "a mapping",
        "lskd synth-mt options when data is 'synth'",
    ),
    "prepare": (
        None,
        lambda v: v is None or _is_prepare(v),
        "{inputs: [...], command: [...]}",
        "a command that writes the data-bin `data` when it is missing (lskd prepare-mt)",
    ),
    "fixed_teachers": SECTION_FIXED_TEACHERS,
    **section_methods(),
    "kinds": (
        ["word", "seq", "seqword"],
        lambda v: isinstance(v, list) and set(v) <= set(KINDS),
        "a list of word, seq, seqword",
        "KD kinds: word-level, sequence-level, sequence + word-level ([]: teachers and baseline only)",
    ),
    "common": ({}, _dict, "a mapping", "fairseq-train options of every run"),
    "teacher": ({}, _dict, "a mapping", "fairseq-train options of the teachers only (e.g. the arch)"),
    "student": ({}, _dict, "a mapping", "fairseq-train options of the students and the baseline"),
    "kd_alpha": (0.9, lambda v: _num(v) and 0 < v <= 1, "a number in (0, 1]", "weight of the KD term"),
    "student_smoothing": (
        0.1,
        lambda v: _num(v) and 0 <= v < 1,
        "a number in [0, 1)",
        "label smoothing of word-level students' CE term and of the no-KD baseline",
    ),
    "seq_smoothing": (
        0.0,
        lambda v: _num(v) and 0 <= v < 1,
        "a number in [0, 1)",
        "label smoothing of sequence-level students (ordinary CE: 0)",
    ),
    "checkpoint": (
        "checkpoint_best.pt",
        _str,
        "a file name",
        "the checkpoint students distil from and BLEU scores",
    ),
    "beam": (4, lambda v: is_int(v) and v >= 1, "an integer >= 1", "beam of seqkd and BLEU"),
    "max_len_b": (200, lambda v: is_int(v) and v >= 1, "an integer >= 1", "longest hypothesis"),
    "decode_max_tokens": (
        4096,
        lambda v: is_int(v) and v >= 1,
        "an integer >= 1",
        "tokens per decoding batch",
    ),
    "teacher_cache": (
        False,
        lambda v: isinstance(v, bool),
        "true or false",
        "word-level students of one teacher share one exact teacher cache (lskd cache-teacher)",
    ),
    "diffusion": (
        {"tokens": None, "max_sentences": 500, "per_token": 200},
        lambda v: v is False or isinstance(v, dict),
        "false or {tokens, max_sentences, per_token}",
        "diffusion analysis of every seed's teachers and word-level students",
    ),
}


def folder(ctx: Dict[str, Any], name: str) -> Path:
    return Path(ctx["folders"][name])


# ------------------------------------------------------------------------------------------ tools
def test_sets(data_bin: str | Path) -> List[List[str]]:
    """[[fairseq subset, name], ...] from DATA_BIN/test_sets.tsv, else [["test", "test"]]."""
    tsv = Path(data_bin) / "test_sets.tsv"
    if not tsv.is_file():
        return [["test", "test"]]
    rows = [line.split("\t") for line in tsv.read_text().splitlines() if line.strip()]
    return [[r[0], r[-1]] for r in rows] or [["test", "test"]]


def device_args(ctx: Dict[str, Any]) -> List[str]:
    import torch

    dev = ctx["cfg"]["device"]
    return ["--cpu"] if dev == "cpu" or (dev == "auto" and not torch.cuda.is_available()) else []


def fairseq_argv(run: Run, ctx: Dict[str, Any]) -> List[str]:
    sec = ctx["cfg"]["translation"]
    data = ctx["data"]["translation"]
    kind = kinds.kind(run.kind) if run.kind else None
    if kind is not None and kind.reads_seqkd:
        data = str(folder(ctx, run.deps[-1]) / layout.SEQKD_DIR / "data-bin")
    argv = [
        data,
        "--user-dir",
        PLUGINS,
        "--save-dir",
        str(folder(ctx, run.name)),
        "--seed",
        str(run.tool_seed),
    ]
    argv += ["--no-progress-bar", "--log-format", "simple", *device_args(ctx)]
    argv += options_argv(run.spec["options"])
    if kind is None or not kind.distribution:  # teachers, the baseline, sequence-level students
        return argv + [
            "--task",
            "translation",
            "--criterion",
            "label_smoothed_cross_entropy",
            "--label-smoothing",
            f"{run.spec['smoothing']:g}",
        ]
    teacher = folder(ctx, run.deps[0])
    if sec["teacher_cache"]:
        argv += ["--teacher-cache", str(teacher / CACHE_DIR)]
    else:
        argv += ["--teacher-path", str(teacher / sec["checkpoint"])]
    return argv + [
        "--task",
        "lskd_translation",
        "--criterion",
        "lskd_kd",
        "--kd-alpha",
        f"{sec['kd_alpha']:g}",
        "--kd-temperature",
        f"{run.temperature:g}",
        "--label-smoothing",
        f"{sec['student_smoothing']:g}",
        *kinds.method_flags(run.method, run.spec),
    ]


def fairseq_parse(argv: List[str], known: bool = False):
    """fairseq-train's parser on ``argv``, with lskd's task and criterion registered first (the
    ``--user-dir`` import is skipped by fairseq when lskd_plugins is already imported, as here)."""
    from fairseq import options

    from lskd_plugins import fairseq_io

    fairseq_io.register_plugins()
    with one_line_errors("translation options"):
        return options.parse_args_and_arch(options.get_training_parser(), input_args=argv, parse_known=known)


def fairseq_train(argv: List[str]) -> None:
    """fairseq-train in this process (what ``fairseq_cli.train.cli_main`` does with ``argv``)."""
    from fairseq import checkpoint_utils, distributed_utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train

    args = fairseq_parse(argv)
    # fairseq keeps the best validation loss on the function: a second training in the same
    # process would otherwise compare against the previous run's best and never save its own
    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best
    distributed_utils.call_main(convert_namespace_to_omegaconf(args), train.main)


def decode_options(ctx: Dict[str, Any]):
    from lskd_plugins.nmt.decode import DecodeOptions

    sec, dev = ctx["cfg"]["translation"], ctx["cfg"]["device"]
    return DecodeOptions(
        beam=sec["beam"], max_tokens=sec["decode_max_tokens"], max_len_b=sec["max_len_b"], device=dev
    )


def score(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    """sacreBLEU / chrF / tokenized BLEU on every test set; the first one gives the table's numbers."""
    from lskd_plugins.nmt.bleu import evaluate_checkpoint

    ckpt = folder(ctx, run.name) / ctx["cfg"]["translation"]["checkpoint"]
    per_set = {}
    for subset, name in test_sets(ctx["data"]["translation"]):
        r = evaluate_checkpoint(
            str(ckpt),
            ctx["data"]["translation"],
            subset,
            decode_options(ctx),
            out=folder(ctx, run.name) / layout.EVAL_DIR,
            progress=False,
        )
        per_set[name] = {
            "bleu": r["sacrebleu"]["score"],
            "chrf": r["chrf"]["score"],
            "tokenized_bleu": r["tokenized_bleu"]["score"],
            "signature": r["sacrebleu"]["signature"],
            "file": f"{layout.EVAL_DIR}/{subset}.bleu.json",
        }
    first = next(iter(per_set.values()))
    return {
        "metrics": {k: first[k] for k in ("bleu", "chrf", "tokenized_bleu")},
        "test_sets": per_set,
        "result_file": first["file"],
    }


def translation_train(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    distils = run.role == "student" and kinds.kind(run.kind).distribution
    if distils and ctx["cfg"]["translation"]["teacher_cache"]:
        ensure_teacher_cache(run, ctx)
    from lskd_plugins.study import devices

    argv = devices.fairseq_argv(fairseq_argv(run, ctx), ctx["cfg"])
    if devices.per_run(ctx["cfg"]) > 1 and devices.on_cpu(ctx["cfg"]):
        devices.fairseq_cpu(argv, devices.per_run(ctx["cfg"]))  # N gloo ranks, one process each
    else:
        fairseq_train(argv)  # on N GPUs fairseq starts its N processes itself
    return score(run, ctx)


def ensure_teacher_cache(run: Run, ctx: Dict[str, Any]) -> None:
    """One cache per teacher, shared by its word-level students (``lskd cache-teacher``)."""
    import subprocess

    from lskd_plugins.nmt.teacher_cache import HEADER  # written last: the cache is complete

    teacher = folder(ctx, run.deps[0])
    with locked(teacher / ".cache.lock"):  # two students of one teacher may start together
        if not (teacher / CACHE_DIR / HEADER).is_file():
            subprocess.run(cache_command(teacher, ctx), check=True)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes of one machine (fcntl)."""
    import fcntl

    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cache_command(teacher: Path, ctx: Dict[str, Any]) -> List[str]:
    """The exact cache (decoder features): every temperature of the grid from one cache."""
    return [
        sys.executable,
        "-m",
        "lskd_plugins.cli",
        "cache-teacher",
        "--data",
        ctx["data"]["translation"],
        "--path",
        str(teacher / ctx["cfg"]["translation"]["checkpoint"]),
        "--output",
        str(teacher / CACHE_DIR),
        "--store",
        TEACHER_CACHE_STORE,
        "--no-progress",
    ]


def seqkd_command(run: Run, ctx: Dict[str, Any]) -> List[str]:
    sec = ctx["cfg"]["translation"]
    teacher = folder(ctx, run.deps[0]) / sec["checkpoint"]
    return [
        "lskd",
        "seqkd",
        "--data",
        ctx["data"]["translation"],
        "--path",
        str(teacher),
        "--output",
        str(folder(ctx, run.name) / layout.SEQKD_DIR),
        "--subset",
        "train",
        "--beam",
        str(sec["beam"]),
        "--max-len-b",
        str(sec["max_len_b"]),
        "--max-tokens",
        str(sec["decode_max_tokens"]),
    ]


def seqkd(run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
    from lskd_plugins.nmt.seqkd import run_seqkd

    sec = ctx["cfg"]["translation"]
    teacher = folder(ctx, run.deps[0]) / sec["checkpoint"]
    report = run_seqkd(
        ctx["data"]["translation"],
        str(teacher),
        folder(ctx, run.name) / layout.SEQKD_DIR,
        "train",
        decode_options(ctx),
        progress=False,
        log=print,
    )
    return {
        "metrics": {},
        "seqkd": {k: v for k, v in report.items() if isinstance(v, (int, float, str))},
        "result_file": f"{layout.SEQKD_DIR}/seqkd.json",
    }


def preprocess(text: Path, data_bin: Path) -> None:
    """fairseq-preprocess --joined-dictionary, in process, its log in DATA_BIN/.preprocess.log."""
    from fairseq import options
    from fairseq_cli import preprocess as fp

    from lskd_plugins.study.execute import redirected

    argv = ["--source-lang", "en", "--target-lang", "de", "--trainpref", str(text / "train")]
    argv += ["--validpref", str(text / "valid"), "--testpref", str(text / "test")]
    argv += ["--destdir", str(data_bin), "--joined-dictionary", "--workers", "1"]
    data_bin.mkdir(parents=True, exist_ok=True)
    with redirected(data_bin / ".preprocess.log"):
        fp.main(options.get_preprocessing_parser().parse_args(argv))


def check_arch(sec: Dict[str, Any], where: str) -> None:
    """One line when a role has no model architecture: fairseq-train cannot start without one, and
    its parser says so with a bare RuntimeError (``where``: "CONFIG: translation")."""
    for role in ("teacher", "student"):
        if not merged(sec, role).get("arch"):
            raise LskdError(
                f"{where}: no 'arch' for the {role}s (fairseq-train's --arch); add it to "
                f"translation.common (or translation.{role}), e.g. arch: transformer "
                "(transformer_iwslt_de_en: the paper's IWSLT model)"
            )


# ------------------------------------------------------------------------------------------- grid
def add_teachers(cfg: Dict[str, Any], g, decode: Dict[str, Any], name: str) -> None:
    """Teachers (and their sequence-level data when a sequence-level kind is asked for)."""
    sec = cfg[name]
    seq = any(kinds.kind(k).reads_seqkd for k in sec["kinds"])
    for a in cfg["teacher_smoothing"]:
        for ts in teacher_seeds(cfg, name):
            teacher = g.add(
                Run(name, "teacher", None, a, None, ts),
                options=merged(sec, "teacher"),
                smoothing=a,
                decode=decode,
            )
            if seq:
                g.add(Run(name, "seqkd", None, a, None, ts, deps=[teacher.name]), decode=decode)


def add_runs(cfg: Dict[str, Any], g, name: str) -> None:
    sec = cfg[name]
    s_opts = merged(sec, "student")
    decode = {"beam": sec["beam"], "max_len_b": sec["max_len_b"], "checkpoint": sec["checkpoint"]}
    add_teachers(cfg, g, decode, name)
    kd = {
        "kd_alpha": sec["kd_alpha"],
        "smoothing": sec["student_smoothing"],
        "decode": decode,
        # the store's name, not True: students of an earlier top-k cache (keyed True) are not reused
        "teacher_cache": TEACHER_CACHE_STORE if sec["teacher_cache"] else False,
    }
    seq = {"smoothing": sec["seq_smoothing"], "decode": decode}
    student_kinds = [kinds.kind(k) for k in KINDS if k in sec["kinds"]]
    for s in seed_range(cfg):
        g.add(
            Run(name, "baseline", None, None, None, s),
            options=s_opts,
            smoothing=sec["student_smoothing"],
            decode=decode,
        )
        for a in cfg["teacher_smoothing"]:
            for kind in student_kinds:
                for t in cfg["temperatures"] if kind.takes_temperature else [None]:
                    deps = reads(cfg, name, kind.name, a, s)
                    for method, settings in methods(sec, kind.name):
                        g.add(
                            Run(name, "student", kind.name, a, t, s, deps=deps, method=method),
                            options=s_opts,
                            **(kd if kind.distribution else seq),
                            **settings,
                        )
    diffusion_runs(cfg, g, name, sec["diffusion"], MODALITY.diffusion_choice)


class Translation(Modality):
    name = "translation"
    doc = "the translation study (or null)"
    section = SECTION
    embedded = "synth"
    primary = "bleu"
    metrics = {
        "bleu": Metric("sacreBLEU"),
        "chrf": Metric("chrF"),
        "tokenized_bleu": Metric("tokenized BLEU"),
    }
    diffusion_choice = "tokens"
    trainer = "translation trainer"
    subsections = {
        "synth": {
            "size": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
            "valid": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
            "test": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
            "seed": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        },
        "diffusion": {
            "tokens": (lambda v: v is None or _str(v), "null or three tokens a,b,c"),
            "max_sentences": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
            "per_token": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        },
    }

    def kinds(self, sec: Dict[str, Any]) -> List[str]:
        return list(sec["kinds"])

    def check_data(self, data: str) -> None:
        from lskd_plugins.study.preflight import check_data_bin_splits

        if not list(Path(data).glob("dict.*.txt")):
            raise LskdError(f"translation.data: {data} is not a fairseq data-bin (no dict.*.txt)")
        check_data_bin_splits(data, "translation.data")

    def dry_run_data(self, out: Path) -> str:
        """Where prepare_embedded writes the data-bin (the dry run's commands point there)."""
        return f"{out}/data/synth/data-bin"

    def prepare_embedded(self, cfg: Dict[str, Any], out: Path) -> str:
        from lskd_plugins.nmt.synth_mt import generate_corpus

        sec = cfg[self.name]
        text, data_bin = out / "data" / "synth" / "text", out / "data" / "synth" / "data-bin"
        if not (data_bin / ".done").is_file():
            s = sec["synth"]
            generate_corpus(
                text,
                s.get("size", 4000),
                s.get("seed", 1),
                valid_size=s.get("valid", 200),
                test_size=s.get("test", 200),
            )
            preprocess(text, data_bin)
            (data_bin / ".done").write_text("")
        return str(data_bin)

    def build(self, cfg: Dict[str, Any], g) -> None:
        add_runs(cfg, g, self.name)

    def command(self, run: Run, ctx: Dict[str, Any]) -> List[str]:
        if run.role == "seqkd":
            return seqkd_command(run, ctx)
        from lskd_plugins.study.devices import fairseq_argv as on_devices

        return ["fairseq-train", *on_devices(fairseq_argv(run, ctx), ctx["cfg"]), "&&", "lskd", "bleu", "..."]

    def execute(self, run: Run, ctx: Dict[str, Any]) -> Dict[str, Any]:
        if run.role == "seqkd":
            return seqkd(run, ctx)
        return translation_train(run, ctx)

    def unknown_options(self, run: Run, ctx: Dict[str, Any]) -> List[str]:
        _, extra = fairseq_parse(fairseq_argv(run, ctx), known=True)
        return extra

    def checkpoint(self, ctx: Dict[str, Any], name: str) -> Path:
        return folder(ctx, name) / ctx["cfg"][self.name]["checkpoint"]

    def diffusion_source(self, ctx, settings, seed, device):
        from lskd_plugins.diffusion.analyse import default_device
        from lskd_plugins.diffusion.nmt_source import NmtSource

        return NmtSource(
            ctx["data"][self.name],
            max_sentences=settings.get("max_sentences", 500),
            per_token=settings.get("per_token", 200),
            device=default_device(device),
            progress=False,
            log=print,
            seed=seed,
        )


MODALITY = Translation()
