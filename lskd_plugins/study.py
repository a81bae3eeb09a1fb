"""``lskd study``: the whole question in one command, on images (timm), with a readable report.

    lskd study --out study_out                     # embedded data: scikit-learn's 8x8 digits
    lskd study --out study_cifar --data CIFAR_DIR  # any ImageFolder with train/ and val/

Steps (each skipped when already done, so a stopped study resumes where it stopped):
1. data: the digits ImageFolder unless ``--data`` is given;
2. teachers: one per ``--alphas`` (label smoothing 0 and 0.1 by default);
3. students: one per (teacher, ``--temps``), pure KD (beta = 1, T^2 scaling), as the paper;
4. the diffusion analysis of every model on three classes (two similar, one dissimilar);
5. ``OUT/report.md`` (+ ``report.json``, ``accuracy_vs_temperature.png``,
   ``diffusion_vs_temperature.png``, ``diffusion/projection.png``): the paper's table, the
   answer this run gives, and the diffusion numbers that explain it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

from lskd_plugins.errors import LskdError
from lskd_plugins.files import write_text_atomic

DEFAULT_TEMPS = "1,2,3,64"
DEFAULT_ALPHAS = "0,0.1"


def parse_floats(spec: str, what: str) -> List[float]:
    try:
        values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise LskdError(
            f"--{what} takes comma-separated numbers, e.g. {DEFAULT_TEMPS}; got {spec!r}"
        ) from None
    if not values:
        raise LskdError(f"--{what} is empty")
    return values


def teacher_dir(runs: Path, alpha: float) -> Path:
    return runs / f"teacher_alpha{alpha:g}"


def student_dir(runs: Path, alpha: float, temperature: float) -> Path:
    return runs / f"student_T{temperature:g}_from_alpha{alpha:g}"


def common_train_args(args: argparse.Namespace) -> List[str]:
    out = [
        "--data",
        str(args.data),
        "--batch-size",
        str(args.batch_size),
        "--opt",
        "momentum",
        "--momentum",
        "0.9",
        "--weight-decay",
        str(args.weight_decay),
        "--sched",
        "cosine",
        "--aug",
        args.aug,
        "--seed",
        str(args.seed),
        "--workers",
        str(args.workers),
        "--device",
        args.device,
    ]
    if args.img_size:
        out += ["--img-size", str(args.img_size)]
    if args.quiet:
        out.append("--quiet")
    return out


def run_training(argv: List[str], out_dir: Path, log) -> Dict[str, Any]:
    """One ``lskd image-train`` run in-process (resumed if interrupted), its summary.json."""
    from lskd_plugins.image import train

    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        log(f"study: {out_dir.name}: done earlier, reusing {summary_path}")
    else:
        log(f"study: training {out_dir.name}")
        parser = argparse.ArgumentParser(prog="lskd image-train")
        train.add_arguments(parser)
        train.main(parser.parse_args([*argv, "--output", str(out_dir), "--resume"]))
    return json.loads(summary_path.read_text())


def paper_table(
    teachers: Dict[float, dict],
    students: Dict[tuple, dict],
    temps: Sequence[float],
    alphas: Sequence[float],
    key: str = "top1",
) -> List[dict]:
    """Rows 'teacher' and 'T=..', one column per teacher alpha (the paper's noLS / LS layout)."""
    rows = [{"row": "teacher", **{f"alpha={a:g}": teachers[a][key] for a in alphas}}]
    for t in temps:
        rows.append({"row": f"T={t:g}", **{f"alpha={a:g}": students[(a, t)][key] for a in alphas}})
    return rows


def answer(
    teachers: Dict[float, dict], students: Dict[tuple, dict], temps: Sequence[float], alphas: Sequence[float]
) -> Dict[str, Any]:
    """What this run says about the practical question, as numbers and one sentence."""
    best = max(students, key=lambda k: students[k]["top1"])
    ls = [a for a in alphas if a > 0]
    nols = [a for a in alphas if a == 0]
    out: Dict[str, Any] = {
        "best_student": {"alpha": best[0], "temperature": best[1], "top1": students[best]["top1"]},
    }
    if ls and nols:
        a_ls, a_no = ls[0], nols[0]
        t_low = min(temps)
        out["ls_minus_nols_at_lowest_T"] = students[(a_ls, t_low)]["top1"] - students[(a_no, t_low)]["top1"]
        out["ls_minus_nols_by_T"] = {
            f"{t:g}": students[(a_ls, t)]["top1"] - students[(a_no, t)]["top1"] for t in temps
        }
        out["ls_teacher_drop_lowest_to_highest_T"] = (
            students[(a_ls, t_low)]["top1"] - students[(a_ls, max(temps))]["top1"]
        )
        out["nols_teacher_drop_lowest_to_highest_T"] = (
            students[(a_no, t_low)]["top1"] - students[(a_no, max(temps))]["top1"]
        )
    kind = "an LS" if best[0] > 0 else "a non-LS"
    out["sentence"] = (
        f"Best student in this run: {kind} teacher (alpha={best[0]:g}) distilled at "
        f"T={best[1]:g}, top-1 {students[best]['top1']:.2f}%."
    )
    return out


def diffusion_by_temperature(records: List[dict], checkpoints: List[tuple]) -> Dict[str, Dict[str, dict]]:
    """{alpha: {T: valid numbers}} for the students, from the diffusion records (same order)."""
    out: Dict[str, Dict[str, dict]] = {}
    for rec, (role, alpha, temp) in zip(records, checkpoints):
        if role == "student":
            out.setdefault(f"{alpha:g}", {})[f"{temp:g}"] = {
                k: rec["valid"].get(k)
                for k in ("eta", "fisher_ab", "leakage_ab", "p_b_given_a", "p_c_given_a")
            }
    return out


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def plot_curves(
    table: List[dict],
    diffusion: Dict[str, Dict[str, dict]],
    temps: Sequence[float],
    alphas: Sequence[float],
    out: Path,
) -> Dict[str, Path]:
    """Student top-1 vs T and diffusion eta / Fisher vs T, per teacher alpha, values annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(len(temps)))
    paths = {}
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for a, colour in zip(alphas, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
        col = f"alpha={a:g}"
        ys = [row[col] for row in table[1:]]
        ax.plot(xs, ys, "o-", color=colour, label=f"student of teacher {col}")
        ax.axhline(table[0][col], color=colour, ls="--", lw=1, label=f"teacher {col}: {table[0][col]:.2f}")
        for x, y in zip(xs, ys):
            ax.annotate(
                f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
            )
    ax.set_xticks(xs, [f"T={t:g}" for t in temps])
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("KD students by temperature and teacher label smoothing")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["accuracy"] = out / "accuracy_vs_temperature.png"
    fig.savefig(paths["accuracy"])
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for key, ax, title in (
        ("eta", axes[0], "directional diffusion eta (a toward b; 1 = isotropic)"),
        ("fisher_ab", axes[1], "Fisher separation J_ab of the similar pair"),
    ):
        for a, colour in zip(alphas, ("tab:blue", "tab:red", "tab:green", "tab:purple")):
            ys = [diffusion.get(f"{a:g}", {}).get(f"{t:g}", {}).get(key) for t in temps]
            ys = [float("nan") if y is None else y for y in ys]
            ax.plot(xs, ys, "o-", color=colour, label=f"students of teacher alpha={a:g}")
            for x, y in zip(xs, ys):
                ax.annotate(
                    _fmt(y), (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8
                )
        ax.set_xticks(xs, [f"T={t:g}" for t in temps])
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    paths["diffusion"] = out / "diffusion_vs_temperature.png"
    fig.savefig(paths["diffusion"])
    plt.close(fig)
    return paths


def _signed(x: float) -> str:
    """'+1.25' / '-0.50' / '+0.00' (never '-0.00')."""
    return f"{round(x, 2) + 0.0:+.2f}"


def class_names(classes: Any) -> str:
    """'a=cat, b=dog (similar to a), c=airplane (dissimilar)' from a diffusion record's classes."""
    if isinstance(classes, dict) and all(k in classes for k in "abc"):
        return f"a={classes['a']}, b={classes['b']} (similar to a), c={classes['c']} (dissimilar)"
    return str(classes)


def markdown_report(doc: Dict[str, Any]) -> str:
    alphas, temps = doc["alphas"], doc["temperatures"]
    cols = [f"alpha={a:g}" for a in alphas]
    ans = doc["answer"]
    lines = [
        "# lskd study: label smoothing x knowledge distillation",
        "",
        f"Data: `{doc['data']}` ({doc['num_classes']} classes). Teachers: timm `{doc['model']}`; students: "
        f"`{doc['student_model']}`; "
        f"{doc['teacher_epochs']} teacher / {doc['student_epochs']} student epochs, pure KD "
        "(beta = 1, T^2 scaling), as in the paper's image recipe.",
        "",
        "## Answer of this run",
        "",
        ans["sentence"],
    ]
    if "ls_minus_nols_at_lowest_T" in ans:
        lines += [
            f"At T={min(temps):g}, the LS teacher's student is "
            f"{_signed(ans['ls_minus_nols_at_lowest_T'])} points against the non-LS teacher's; going from "
            f"T={min(temps):g} to T={max(temps):g} changes the LS teacher's student by "
            f"{_signed(-ans['ls_teacher_drop_lowest_to_highest_T'])} points and the non-LS teacher's by "
            f"{_signed(-ans['nols_teacher_drop_lowest_to_highest_T'])}.",
            "The paper's advice (ICML 2022) is an LS teacher with a low-temperature transfer (T = 1); "
            "small data and few epochs make single runs noisy, so read differences below a point or "
            "two as ties unless repeated with other seeds.",
        ]
    lines += [
        "",
        "## Top-1 (%) of students, by teacher",
        "",
        "| | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for row in doc["table_top1"]:
        lines.append(f"| {row['row']} | " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    lines += [
        "",
        "![accuracy](accuracy_vs_temperature.png)",
        "",
        "## Systematic diffusion of the students (validation)",
        "",
        f"Classes: {class_names(doc['classes'])}. Why: {doc.get('class_reason') or 'given by --classes'}.",
        "",
        "eta > 1: class a spreads toward the similar class b more than toward c. "
        "J_ab: Fisher separation of a and b (falls when they diffuse into each other). "
        "leakage: share of a's points nearer b's centroid. See docs/diffusion.md.",
        "",
        "| teacher | T | eta | J_ab | leakage a->b | p(b given a) | p(c given a) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in alphas:
        for t in temps:
            n = doc["diffusion_by_temperature"].get(f"{a:g}", {}).get(f"{t:g}", {})
            lines.append(
                f"| alpha={a:g} | {t:g} | {_fmt(n.get('eta'))} | {_fmt(n.get('fisher_ab'))} | "
                f"{_fmt(n.get('leakage_ab'), 3)} | {_fmt(n.get('p_b_given_a'), 4)} | "
                f"{_fmt(n.get('p_c_given_a'), 4)} |"
            )
    lines += [
        "",
        "![diffusion](diffusion_vs_temperature.png)",
        "",
        "Penultimate features projected on the three classes' templates (the paper's Algorithm 1):",
        "",
        "![projection](diffusion/projection.png)",
        "",
        "## Every run",
        "",
        "| run | label | top-1 | top-5 | NLL | ECE |",
        "|---|---|---|---|---|---|",
    ]
    for run in doc["runs"]:
        s = run["summary"]
        lines.append(
            f"| {run['name']} | {s.get('label', '')} | {_fmt(s['top1'])} | {_fmt(s['top5'])} | "
            f"{_fmt(s['nll'], 4)} | {_fmt(s['ece'], 4)} |"
        )
    lines += [
        "",
        "Files: `report.json` (all numbers), `runs/*/summary.json`, `diffusion/diffusion.json`.",
        "",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="study_out", help="study folder (default: study_out)")
    parser.add_argument(
        "--data",
        default=None,
        help="ImageFolder root with train/ and val/ (default: the embedded 8x8 digits, "
        "written to OUT/data/digits)",
    )
    parser.add_argument("--model", default="resnet10t", help="timm model of the teachers (default resnet10t)")
    parser.add_argument("--student-model", default=None, help="timm model of the students (default: --model)")
    parser.add_argument(
        "--img-size", type=int, default=16, help="input size (default 16, for the 8x8 digits)"
    )
    parser.add_argument(
        "--aug", default="none", help="augmentation preset of lskd image-train (default none)"
    )
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument(
        "--temps", default=DEFAULT_TEMPS, help=f"student temperatures (default {DEFAULT_TEMPS})"
    )
    parser.add_argument(
        "--alphas", default=DEFAULT_ALPHAS, help=f"teacher label smoothing (default {DEFAULT_ALPHAS})"
    )
    parser.add_argument(
        "--classes", default=None, help="diffusion classes a,b,c (a,b similar); default: automatic"
    )
    parser.add_argument(
        "--per-class", type=int, default=100, help="images per class for the diffusion analysis"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run_study(args: argparse.Namespace, log=print) -> Dict[str, Any]:
    """Run (or resume) the study; returns the report document (also written to OUT)."""
    from lskd_plugins.diffusion.analyse import analyse_image_checkpoints
    from lskd_plugins.diffusion.report import clean, write_outputs

    temps, alphas = parse_floats(args.temps, "temps"), parse_floats(args.alphas, "alphas")
    if any(t <= 0 for t in temps):
        raise LskdError(f"--temps must all be > 0, got {args.temps}")
    if any(not 0 <= a < 1 for a in alphas):
        raise LskdError(f"--alphas must lie in [0, 1), got {args.alphas}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        from lskd_plugins.image.digits import write_digits

        args.data = out / "data" / "digits"
        write_digits(Path(args.data))
        log(f"study: embedded data (scikit-learn digits) in {args.data}")
    elif not (Path(args.data) / "train").is_dir() or not (Path(args.data) / "val").is_dir():
        raise LskdError(f"--data {args.data} needs train/ and val/ class folders (an ImageFolder root)")

    runs = out / "runs"
    base = [*common_train_args(args)]
    teachers, students, run_list, checkpoints = {}, {}, [], []
    for a in alphas:
        d = teacher_dir(runs, a)
        teachers[a] = run_training(
            [
                *base,
                "--model",
                args.model,
                "--epochs",
                str(args.teacher_epochs),
                "--lr",
                str(args.lr),
                "--smoothing",
                f"{a:g}",
            ],
            d,
            log,
        )
        run_list.append({"name": d.name, "summary": teachers[a]})
        checkpoints.append(("teacher", a, None))
    for a in alphas:
        for t in temps:
            d = student_dir(runs, a, t)
            students[(a, t)] = run_training(
                [
                    *base,
                    "--model",
                    args.student_model or args.model,
                    "--epochs",
                    str(args.student_epochs),
                    "--lr",
                    str(args.lr),
                    "--teacher-checkpoint",
                    str(teacher_dir(runs, a) / "checkpoint_last.pth"),
                    "--kd-temperature",
                    f"{t:g}",
                    "--kd-beta",
                    "1.0",
                ],
                d,
                log,
            )
            run_list.append({"name": d.name, "summary": students[(a, t)]})
            checkpoints.append(("student", a, t))

    paths = [
        str((teacher_dir(runs, a) if role == "teacher" else student_dir(runs, a, t)) / "checkpoint_last.pth")
        for role, a, t in checkpoints
    ]
    log("study: diffusion analysis of every model")
    records, projections = analyse_image_checkpoints(
        paths,
        args.data,
        classes=args.classes,
        per_class=args.per_class,
        device=None if args.device == "auto" else args.device,
        progress=not args.quiet,
        log=lambda m: log(m),
    )
    write_outputs(records, projections, out / "diffusion")

    table = paper_table(teachers, students, temps, alphas)
    diffusion = diffusion_by_temperature(records, checkpoints)
    selection = records[0].get("selection") or {}
    doc = {
        "format": "lskd-study-v1",
        "data": str(args.data),
        "num_classes": teachers[alphas[0]].get("num_classes", len(records[0].get("classes", []))),
        "model": args.model,
        "student_model": args.student_model or args.model,
        "teacher_epochs": args.teacher_epochs,
        "student_epochs": args.student_epochs,
        "alphas": alphas,
        "temperatures": temps,
        "table_top1": table,
        "table_nll": paper_table(teachers, students, temps, alphas, "nll"),
        "table_ece": paper_table(teachers, students, temps, alphas, "ece"),
        "answer": answer(teachers, students, temps, alphas),
        "classes": records[0].get("classes"),
        "class_reason": selection.get("reason", "") if isinstance(selection, dict) else "",
        "diffusion_by_temperature": diffusion,
        "runs": run_list,
    }
    plot_curves(table, diffusion, temps, alphas, out)
    write_text_atomic(out / "report.json", json.dumps(clean(doc), indent=1) + "\n")
    (out / "report.md").write_text(markdown_report(doc))
    log(f"study: report written to {out / 'report.md'}")
    log(doc["answer"]["sentence"])
    return doc


def main(args: argparse.Namespace) -> int:
    run_study(args)
    return 0
