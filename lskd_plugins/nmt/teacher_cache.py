"""``lskd cache-teacher``: what word-level KD needs of the teacher, stored once, read by training.

    lskd cache-teacher --data DATA_BIN --path TEACHER.pt --output DIR [--subset train]
    fairseq-train DATA_BIN --user-dir lskd_plugins --task lskd_translation \\
        --teacher-cache DIR --criterion lskd_kd --kd-temperature 2 ...

One pass of the teacher over ``--subset`` under teacher forcing (the gold target of the data-bin,
or the teacher's own output for a sequence-level KD data-bin: whatever the data-bin holds). Two
stores (``--store``):

- ``features`` (default, exact): the teacher's decoder output before its output projection,
  float16, ``{subset}.features.npy`` (tokens, members, D), and the output projection itself
  (``projection.pt``: weight and bias per member, float32). Training applies the projection
  chunk by chunk inside the loss, exactly as the online teacher does (``ProjectedFeatureTeacher``), so
  the KD term is the online one at every temperature, up to the float16 rounding of the
  features. A ``:`` ensemble is cached member by member (its averaged distribution at any T is
  then exact too). Disk per target token: 2 * members * D bytes (D = 512: 1 KiB). The step
  costs the student's plain step plus one output projection (no teacher layers).
- ``topk`` (lossy, opt-in): the top-k token ids (int32) and log-probabilities at T = 1 (float16)
  of ``--topk`` tokens, and ``{subset}.logz.npy`` float32 (tokens, temperatures), the
  log-partition logsumexp(z / T) at each of ``--temperatures`` (T = 1 always included); the
  rest of the mass is spread evenly over the other tokens (``TopkTeacher``: a flat tail). Its
  error is the teacher's tail shape, which is what label smoothing changes: measured on trained
  teachers it is of the size of the KL itself (docs/fairseq_plugins.md, section 10). Ensembles
  are refused here (the top-k of an averaged distribution depends on T).

Both stores write ``{subset}.offsets.npy`` int64 (sentences + 1): where sentence i's tokens start,
i being the dataset's own index (``sample["id"]``), so fairseq's shuffling, batching and
multi-process sharding are unchanged: each batch looks its rows up by sentence id; and
``header.json`` (written last: its presence means the cache is complete): format and version,
the store, the teacher (path, size, sha256), the data (data-bin, subset, languages, sentences,
tokens of each side, sha256 of both sides' .idx/.bin files, of the symbols of both dictionary
files and of the target dictionary) and the store's settings. Training refuses a cache whose data part
differs from the data-bin it trains on.

Resuming: sentences are processed in shards of ``--shard-size`` (in index order) written into
memory-mapped arrays under ``DIR/.partial``; ``.partial/done.json`` (atomic) counts the finished
shards, so a killed run continues at the first unfinished shard. The arrays move into ``DIR``
and the header is written when every shard is done.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from lskd_plugins.errors import LskdError, positive_int
from lskd_plugins.files import claim_output, refuse_overlap, torch_save_atomic, write_text_atomic

FORMAT, VERSION, HEADER = "lskd-teacher-cache", 2, "header.json"
STORES = ("features", "topk")
ARRAYS = {"features": ("offsets", "features"), "topk": ("offsets", "ids", "lprobs", "logz")}
PROJECTION = "projection.pt"  # the features store's output projections, one per member


# -- identities -------------------------------------------------------------------------------------
def file_sha256(path: os.PathLike | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def teacher_identity(path: str) -> Dict[str, object]:
    p = Path(path)
    return {"path": str(p.resolve()), "size": p.stat().st_size, "sha256": file_sha256(p)}


def symbols_sha256(path: Path) -> str:
    """sha256 of a fairseq dictionary file's symbols in order (the counts beside them change nothing)."""
    lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    return hashlib.sha256(
        "\n".join(line.split(" ")[0] for line in lines).encode(errors="surrogateescape")
    ).hexdigest()


def subset_files(data: Path, subset: str, src: str, tgt: str) -> List[Path]:
    """Both sides' binarized files of ``subset`` (train, train1, ... as fairseq combines them): the
    teacher reads the source side, the cache is indexed by the target side."""
    files = []
    for pair in (f"{src}-{tgt}", f"{tgt}-{src}"):
        for lang in (src, tgt):
            stem = f"{subset}.{pair}.{lang}"
            files += sorted(data.glob(f"{stem}.idx")) + sorted(data.glob(f"{stem}.bin"))
            files += sorted(
                p for p in data.glob(f"{subset}[0-9]*.{pair}.{lang}.*") if p.suffix in (".idx", ".bin")
            )
    return sorted(set(files))


def data_identity(data: str, subset: str, src: str, tgt: str, dataset, tgt_dict) -> Dict[str, object]:
    """What the cache is aligned with: fails the check when any token of either side of the subset,
    or either dictionary file, changes (the teacher's outputs depend on the source sentence)."""
    root = Path(data)
    sizes = np.asarray(dataset.tgt_sizes, dtype=np.int64)
    symbols = hashlib.sha256("\n".join(tgt_dict.symbols).encode()).hexdigest()
    dicts = [root / f"dict.{lang}.txt" for lang in (src, tgt)]
    return {
        "subset": subset,
        "source_lang": src,
        "target_lang": tgt,
        "sentences": int(len(sizes)),
        "tokens": int(sizes.sum()),
        "source_tokens": int(np.asarray(dataset.src_sizes, dtype=np.int64).sum()),
        "target_dictionary_sha256": symbols,
        "dictionaries": {p.name: symbols_sha256(p) for p in dicts if p.is_file()},
        "files": {p.name: file_sha256(p) for p in subset_files(root, subset, src, tgt)},
    }


def parse_temperatures(text: str) -> List[float]:
    """'1,2,3,64' -> [1.0, 2.0, 3.0, 64.0]; T = 1 is always cached (teacher NLL, other temperatures)."""
    try:
        temps = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not temps or any(not (t > 0 and np.isfinite(t)) for t in temps):
        raise argparse.ArgumentTypeError(f"temperatures must be finite numbers > 0, got {text!r}")
    return sorted(set(temps) | {1.0})


def first_mismatch(expected: dict, found: dict, prefix: str = "") -> str | None:
    """The first key (dotted) whose value differs between two nested dicts, as 'key: a != b'."""
    for key in sorted(set(expected) | set(found)):
        a, b = expected.get(key), found.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = first_mismatch(a, b, f"{prefix}{key}.")
            if inner:
                return inner
        elif a != b:
            return f"{prefix}{key}: cache {b!r}, here {a!r}"
    return None


# -- reading ------------------------------------------------------------------------------------------
def read_header(folder: os.PathLike | str) -> dict:
    path = Path(folder) / HEADER
    if not Path(folder).is_dir():
        raise LskdError(f"--teacher-cache {folder} is not a folder; make one with lskd cache-teacher")
    if not path.is_file():
        raise LskdError(
            f"--teacher-cache {folder} holds no {HEADER}: not a teacher cache, or an unfinished "
            "one; rerun the same lskd cache-teacher command to finish it"
        )
    try:
        header = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LskdError(f"--teacher-cache {path} is unreadable or corrupt ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise LskdError(f"--teacher-cache {path} is not an lskd teacher cache header")
    if header.get("version") not in (1, VERSION):
        raise LskdError(
            f"--teacher-cache {path}: format version {header.get('version')}, this lskd reads 1 and "
            f"{VERSION}; rebuild it with lskd cache-teacher"
        )
    header.setdefault("store", "topk")  # version 1 caches are top-k caches
    return header


def refuse_method(folder: os.PathLike | str, kd_method: str) -> None:
    """--kd-method logit_std and dkd need the teacher's logits: a top-k cache holds none (one line)."""
    if kd_method != "kd" and read_header(folder)["store"] == "topk":
        raise LskdError(
            f"--kd-method {kd_method} needs the teacher's logits, which the top-k cache {folder} does not "
            "hold; cache the features (lskd cache-teacher --store features, the default) or distil "
            "online with --teacher-path"
        )


class TeacherCache:
    """A finished cache of one subset, memory-mapped; ``teacher_for`` builds a batch's teacher."""

    def __init__(self, folder: os.PathLike | str, subset: str):
        self.folder, self.header = Path(folder), read_header(folder)
        self.store = self.header["store"]
        if self.header["data"]["subset"] != subset:
            raise LskdError(
                f"--teacher-cache {folder} caches subset {self.header['data']['subset']!r}, not {subset!r}"
            )
        try:
            arrays = {
                name: np.load(self.folder / f"{subset}.{name}.npy", mmap_mode="r")
                for name in ARRAYS[self.store]
            }
        except (OSError, ValueError) as err:
            raise LskdError(f"--teacher-cache {folder}: cannot map its arrays ({err}); rebuild it") from None
        self.offsets = arrays.pop("offsets")
        self.arrays, self.vocab = arrays, int(self.header["vocab"])
        rows = next(iter(arrays.values())).shape[0]
        if rows != int(self.offsets[-1]) or any(a.shape[0] != rows for a in arrays.values()):
            raise LskdError(
                f"--teacher-cache {folder}: arrays do not match its header (truncated?); rebuild it"
            )
        self.projections = self._load_projections() if self.store == "features" else None

    def _load_projections(self) -> list:
        import torch

        try:
            projections = torch.load(self.folder / PROJECTION, map_location="cpu", weights_only=True)
        except Exception as err:  # missing or corrupt file: one line
            raise LskdError(
                f"--teacher-cache {self.folder}: cannot read {PROJECTION} ({err}); rebuild it"
            ) from None
        if len(projections) != self.arrays["features"].shape[1]:
            raise LskdError(f"--teacher-cache {self.folder}: {PROJECTION} does not match the features")
        return projections

    @staticmethod
    def describe_header(header: dict) -> str:
        if header["store"] == "features":
            return f"decoder features of {header['members']} member(s), exact at every temperature"
        return f"top-{header['topk']} with a flat tail, temperatures {header['temperatures']}"

    def check_data(self, expected: dict) -> None:
        """One line naming the first difference between the cache's data and the data trained on."""
        if "source_tokens" not in self.header["data"]:
            raise LskdError(
                f"--teacher-cache {self.folder} records only the target side of its data (an earlier "
                "lskd made it), so a changed source side would go unnoticed; rebuild it with "
                "lskd cache-teacher"
            )
        diff = first_mismatch(expected, self.header["data"])
        if diff:
            raise LskdError(
                f"--teacher-cache {self.folder} was made for other data ({diff}); rebuild it with "
                "lskd cache-teacher on this data-bin"
            )

    def positions(self, sample_ids, lengths, width: int, prefix: int = 0):
        """Flat cache rows of a (B, width) target (after a stripped prefix) and the flat mask."""
        import torch

        ids = sample_ids.cpu().numpy()
        starts = self.offsets[ids]
        stored = self.offsets[ids + 1] - starts
        lengths = lengths.cpu().numpy()
        if not np.array_equal(stored, lengths + prefix):
            i = int(np.flatnonzero(stored != lengths + prefix)[0])
            raise LskdError(
                f"--teacher-cache {self.folder}: sentence {int(ids[i])} has {int(stored[i])} cached tokens "
                f"but the batch holds {int(lengths[i] + prefix)}: the cache is not aligned with this data"
            )
        cols = np.arange(width)
        mask = cols[None, :] < lengths[:, None]
        rows = (starts[:, None] + prefix + cols[None, :])[mask]
        return torch.from_numpy(rows.astype(np.int64)), torch.from_numpy(mask.reshape(-1))

    def teacher_for(self, sample_ids, target, pad: int, prefix: int = 0):
        """The TeacherSource of a (B, L) target whose padding is ``pad`` (rows at padding are zeros)."""
        import torch

        lengths = target.ne(pad).sum(-1)
        rows, mask = self.positions(sample_ids, lengths, target.size(1), prefix)
        flat = mask.nonzero().squeeze(-1)

        def gather(name, dtype):
            array = self.arrays[name]
            out = torch.zeros((target.numel(), *array.shape[1:]), dtype=dtype)
            out[flat] = torch.from_numpy(np.ascontiguousarray(array[rows.numpy()])).to(dtype)
            return out.to(target.device)

        if self.store == "features":
            return self._feature_teacher(gather("features", torch.float16), target.device)
        from lskd_plugins.kd_loss import TopkTeacher

        temps = [float(t) for t in self.header["temperatures"]]
        return TopkTeacher(
            gather("ids", torch.long),
            gather("lprobs", torch.float16),
            gather("logz", torch.float32),
            temps,
            self.vocab,
        )

    def _feature_teacher(self, features, device):
        """ProjectedFeatureTeacher over (N, members, D) float16 features and the stored projections."""
        import functools

        from lskd_plugins.kd_loss import ProjectedFeatureTeacher

        placed = [{k: _to(v, device) for k, v in p.items()} for p in self.projections]
        self.projections = placed  # moved once: later batches find them on the device
        project = [functools.partial(_project, p["weight"], p.get("bias")) for p in placed]
        members = [features[:, i] for i in range(features.size(1))]
        return ProjectedFeatureTeacher(members, project, self.vocab)


def _to(tensor, device):
    return None if tensor is None else tensor.to(device)


def _project(weight, bias, x):
    """The teacher's output projection (float32) of float16 features."""
    import torch

    return torch.nn.functional.linear(x.to(weight.dtype), weight, bias)


# -- writing --------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="the fairseq data-bin the students train on")
    parser.add_argument(
        "--path", required=True, help="the teacher checkpoint (A.pt:B.pt: an ensemble, --store features only)"
    )
    parser.add_argument("--output", help="the cache folder (required; created; a killed run resumes there)")
    parser.add_argument("--out", dest="output", help=argparse.SUPPRESS)
    parser.add_argument(
        "--store",
        choices=STORES,
        default="features",
        help="features: the teacher's decoder output, exact at every T (default); topk: top-k "
        "log-probs and a flat tail, lossy (docs/fairseq_plugins.md, section 10)",
    )
    parser.add_argument(
        "--topk", type=positive_int, default=None, help="--store topk: tokens kept per position (default 8)"
    )
    parser.add_argument(
        "--temperatures",
        type=parse_temperatures,
        default=None,
        help="--store topk: comma-separated temperatures whose log-partition is stored (T = 1 always "
        "added; default 1,2,3,64)",
    )
    parser.add_argument("--subset", default="train", help="the split to cache (default %(default)s)")
    parser.add_argument(
        "--source-lang", default=None, help="source language (default: inferred from the data-bin)"
    )
    parser.add_argument(
        "--target-lang", default=None, help="target language (default: inferred from the data-bin)"
    )
    parser.add_argument(
        "--max-tokens", type=positive_int, default=4096, help="tokens per batch (default %(default)s)"
    )
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=2000,
        help="sentences per resumable shard (default %(default)s)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder holding other results")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")


def load_data(data: str, subset: str, src: str | None, tgt: str | None):
    """(task, dataset) of a data-bin, loaded as fairseq-train loads it (combine=True)."""
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    root = Path(data)
    if not root.is_dir() or not list(root.glob("dict.*.txt")):
        raise LskdError(f"--data {data} is not a fairseq data-bin (no dict.*.txt there)")
    try:
        task = TranslationTask.setup_task(
            TranslationConfig(
                data=str(root),
                source_lang=src,
                target_lang=tgt,
                required_seq_len_multiple=1,
                dataset_impl=None,
                train_subset=subset,
            )
        )
        task.load_dataset(subset, combine=True, epoch=1)
    except LskdError:
        raise
    except Exception as err:  # a missing split, a corrupt .idx/.bin: one line naming the data-bin
        raise LskdError(
            f"--data {data}: cannot load subset {subset!r} ({type(err).__name__}: {err})"
        ) from None
    dataset = task.dataset(subset)
    if getattr(dataset, "tgt", None) is None:
        raise LskdError(f"--data {data}: subset {subset} has no target side to cache the teacher on")
    return task, dataset


def shard_ranges(n: int, size: int) -> List[range]:
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def batches(dataset, ids: Sequence[int], max_tokens: int) -> List[List[int]]:
    """Batches of ``ids`` by length (fairseq's batch_by_size); a long sentence goes alone."""
    from fairseq.data import data_utils

    ids = np.asarray(list(ids), dtype=np.int64)
    sizes = np.asarray([dataset.num_tokens(int(i)) for i in ids], dtype=np.int64)
    order = ids[np.argsort(sizes, kind="stable")]
    return [
        [int(i) for i in b]
        for b in data_utils.batch_by_size(
            order,
            num_tokens_fn=lambda i: int(dataset.num_tokens(int(i))),
            max_tokens=max(max_tokens, int(sizes.max())),
        )
    ]


def target_features(teachers, sample, pad: int):
    """{"features": (n, members, D) float16} of the non-padding target positions, row-major (b, j)."""
    import torch

    mask = sample["target"].ne(pad)
    with torch.no_grad():
        x = torch.stack([t(**sample["net_input"], features_only=True)[0][mask] for t in teachers], 1)
    half = x.half()
    if not torch.isfinite(half).all():
        raise LskdError(
            f"the teacher's decoder features exceed float16's range (max |x| = {x.abs().max():.3g}); "
            "cache it with --store topk, or distil online with --teacher-path"
        )
    return {"features": half.cpu().numpy()}


def target_topk(teachers, sample, pad: int, topk: int, temps: Sequence[float]):
    """{ids, lprobs at T=1, log Z per T} of the non-padding target positions, row-major (b, j).

    The output projection runs on row chunks of the decoder features, so the teacher's full
    logits of a batch never exist at once.
    """
    import torch

    from lskd_plugins.kd_loss import topk_entries

    (teacher,) = teachers
    with torch.no_grad():
        features = teacher(**sample["net_input"], features_only=True)[0]
        features = features[sample["target"].ne(pad)]
        rows = max(1, (1 << 22) // max(1, teacher.decoder.output_projection.out_features))
        outs = []
        for chunk in features.split(rows):
            ids, lprobs, log_z = topk_entries(teacher.output_layer(chunk), topk, temps)
            outs.append((ids.int(), lprobs.half(), log_z.float()))
    arrays = [torch.cat(parts).cpu().numpy() for parts in zip(*outs)]
    return dict(zip(("ids", "lprobs", "logz"), arrays))


def projections_of(teachers) -> list:
    """Each teacher's output projection {weight, bias} (float32, CPU); one line if it has none."""
    import torch

    out = []
    for teacher in teachers:
        decoder = teacher.decoder
        projection = getattr(decoder, "output_projection", None)
        if getattr(decoder, "adaptive_softmax", None) is not None or not isinstance(
            projection, torch.nn.Linear
        ):
            raise LskdError(
                "--store features needs a decoder whose output layer is one linear projection "
                "(fairseq's transformer); use --store topk or distil online with --teacher-path"
            )
        bias = projection.bias
        out.append(
            {
                "weight": projection.weight.detach().float().cpu().clone(),
                "bias": None if bias is None else bias.detach().float().cpu().clone(),
            }
        )
    return out


def array_shapes(header: dict, tokens: int) -> Dict[str, tuple]:
    """name -> (shape, dtype) of the arrays a cache writes (offsets excluded), from its header."""
    if header["store"] == "features":
        return {"features": ((tokens, header["members"], header["dim"]), np.float16)}
    return {
        "ids": ((tokens, header["topk"]), np.int32),
        "lprobs": ((tokens, header["topk"]), np.float16),
        "logz": ((tokens, len(header["temperatures"])), np.float32),
    }


class PartialCache:
    """Memory-mapped arrays under ``DIR/.partial`` and the count of finished shards."""

    def __init__(self, folder: Path, subset: str, offsets: np.ndarray, shapes: Dict[str, tuple], key: str):
        self.dir, self.subset, self.key = folder / ".partial", subset, key
        self.dir.mkdir(exist_ok=True)
        shapes = {"offsets": (offsets.shape, np.int64), **shapes}
        self.names = list(shapes)
        # a run killed while publishing may have moved some arrays out already: start that subset over
        self.done = self._read_done() if all(self.path(n).is_file() for n in self.names) else 0
        mode = "r+" if self.done else "w+"
        self.arrays = {
            name: np.lib.format.open_memmap(
                self.path(name), mode=mode, dtype=dtype, shape=shape if mode == "w+" else None
            )
            for name, (shape, dtype) in shapes.items()
        }
        if any(self.arrays[name].shape != shape for name, (shape, _) in shapes.items()):
            raise LskdError(f"{self.dir}: a partial cache of another shape; rerun with --overwrite")
        self.arrays["offsets"][:] = offsets

    def path(self, name: str) -> Path:
        return self.dir / f"{self.subset}.{name}.npy"

    def _read_done(self) -> int:
        try:
            state = json.loads((self.dir / "done.json").read_text())
            return int(state["shards"]) if state.get("key") == self.key else 0
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def finish_shard(self) -> None:
        for array in self.arrays.values():
            array.flush()
        self.done += 1
        write_text_atomic(self.dir / "done.json", json.dumps({"shards": self.done, "key": self.key}) + "\n")

    def write(self, positions: np.ndarray, arrays: Dict[str, np.ndarray]) -> None:
        for name, values in arrays.items():
            self.arrays[name][positions] = values

    def publish(self, folder: Path, header: dict, extra: Sequence[Path] = ()) -> None:
        """Move the arrays into the cache folder and write the header last (the completion mark)."""
        for array in self.arrays.values():
            array.flush()
        self.arrays.clear()
        for name in self.names:
            os.replace(self.path(name), folder / f"{self.subset}.{name}.npy")
        for path in extra:
            os.replace(path, folder / path.name)
        write_text_atomic(folder / HEADER, json.dumps(header, indent=1) + "\n")
        (self.dir / "done.json").unlink(missing_ok=True)
        self.dir.rmdir()


def batch_positions(offsets: np.ndarray, sample, pad: int) -> np.ndarray:
    """Cache rows of a collated batch's non-padding target tokens, row-major (b, j); checks lengths."""
    ids = sample["id"].numpy()
    mask = sample["target"].ne(pad).numpy()
    lengths = mask.sum(1)
    if not np.array_equal(lengths, np.diff(offsets)[ids]):
        raise LskdError(
            "the collated targets do not have the data-bin's lengths (a dataset option changed them)"
        )
    return (offsets[ids][:, None] + np.cumsum(mask, 1) - 1)[mask]


def cache_subset(cache: PartialCache, dataset, teachers, offsets, args, device) -> None:
    """Fill the unfinished shards, with one progress display for the whole subset."""
    from fairseq import utils

    from lskd_plugins.progress import Progress

    shards = shard_ranges(len(dataset), args.shard_size)
    pad = dataset.tgt_dict.pad()
    initial = sum(len(s) for s in shards[: cache.done])
    with Progress(
        len(dataset), f"cache-teacher {args.subset}", "sent", not args.no_progress, initial=initial
    ) as bar:
        for shard in shards[cache.done :]:
            for batch in batches(dataset, shard, args.max_tokens):
                sample = dataset.collater([dataset[i] for i in batch])
                positions = batch_positions(offsets, sample, pad)
                sample = utils.move_to_cuda(sample, device=device) if device.type == "cuda" else sample
                if args.store == "features":
                    cache.write(positions, target_features(teachers, sample, pad))
                else:
                    cache.write(positions, target_topk(teachers, sample, pad, args.topk, args.temperatures))
                bar.update(len(batch))
            cache.finish_shard()


def check_store_options(args, paths: Sequence[str]) -> None:
    """--topk/--temperatures belong to --store topk; an ensemble only to --store features."""
    if args.store == "features":
        options = (("--topk", args.topk), ("--temperatures", args.temperatures))
        given = [o for o, v in options if v is not None]
        if given:
            raise LskdError(
                f"{' and '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to --store topk "
                "(the default store, features, is "
                "exact at every temperature); drop them or add --store topk"
            )
        return
    if len(paths) > 1:
        raise LskdError(
            "--path: an ensemble cannot be cached with --store topk (its top-k depends on the "
            "temperature); use --store features, or distil from the ensemble online with --teacher-path"
        )
    args.topk = 8 if args.topk is None else args.topk
    args.temperatures = parse_temperatures("1,2,3,64") if args.temperatures is None else args.temperatures


def store_settings(args, teachers) -> Dict[str, object]:
    if args.store == "features":
        return {"members": len(teachers), "dim": teachers[0].decoder.output_projection.in_features}
    return {"topk": args.topk, "temperatures": args.temperatures}


def ensemble_identity(paths: Sequence[str]) -> Dict[str, object]:
    if len(paths) == 1:
        return teacher_identity(paths[0])
    members = [teacher_identity(p) for p in paths]
    joined = "".join(m["sha256"] for m in members).encode()
    path = ":".join(m["path"] for m in members)
    return {"path": path, "members": members, "sha256": hashlib.sha256(joined).hexdigest()}


def main(args: argparse.Namespace) -> int:
    from lskd_plugins.fairseq_io import register_plugins, split_paths
    from lskd_plugins.nmt.decode import resolve_device

    register_plugins()
    from lskd_plugins.nmt.teacher import load_teacher

    if not args.output:
        raise LskdError("lskd cache-teacher: --output DIR is required (the cache folder)")
    paths = split_paths(args.path)
    check_store_options(args, paths)
    refuse_overlap(args.output, [args.data, *paths])
    task, dataset = load_data(args.data, args.subset, args.source_lang, args.target_lang)
    src, tgt = task.cfg.source_lang, task.cfg.target_lang
    if args.store == "topk" and args.topk > len(task.target_dictionary):
        raise LskdError(
            f"--topk {args.topk} exceeds the target dictionary's {len(task.target_dictionary)} symbols"
        )
    teachers = [load_teacher(p, task.source_dictionary, task.target_dictionary, src, tgt) for p in paths]
    projections = projections_of(teachers) if args.store == "features" else None
    device = resolve_device(args.device)
    for teacher in teachers:
        teacher.to(device)
    header = {
        "format": FORMAT,
        "version": VERSION,
        "store": args.store,
        "teacher": ensemble_identity(paths),
        "data": data_identity(args.data, args.subset, src, tgt, dataset, task.target_dictionary),
        "data_bin": str(Path(args.data).resolve()),
        **store_settings(args, teachers),
        "vocab": len(task.target_dictionary),
    }
    key = hashlib.sha256(
        json.dumps({k: v for k, v in header.items() if k != "data_bin"}, sort_keys=True).encode()
    )
    folder = claim_output(
        args.output, {"command": "lskd cache-teacher", "key": key.hexdigest()}, args.overwrite
    )
    if (folder / HEADER).is_file():
        print(f"lskd: {folder} already holds this cache; nothing to do")
        return 0
    offsets = np.concatenate([[0], np.cumsum(np.asarray(dataset.tgt_sizes, dtype=np.int64))])
    shapes = array_shapes(header, int(offsets[-1]))
    cache = PartialCache(folder, args.subset, offsets, shapes, key.hexdigest())
    extra = []
    if projections is not None:
        extra.append(torch_save_atomic(projections, cache.dir / PROJECTION))
    cache_subset(cache, dataset, teachers, offsets, args, device)
    cache.publish(folder, header, extra)
    per_token = sum(int(np.prod(shape[1:])) * np.dtype(dtype).itemsize for shape, dtype in shapes.values())
    print(
        f"lskd: cached {len(dataset)} sentences, {int(offsets[-1])} target tokens of {args.subset} "
        f"({args.store}: {TeacherCache.describe_header(header)}): {per_token} bytes per token, in {folder}"
    )
    return 0
