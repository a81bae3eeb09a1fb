"""lskd seqkd: original order, one line per source sentence, data-bin, resuming, failures kept aligned."""

from __future__ import annotations

import filecmp
import json
import subprocess
from pathlib import Path

import pytest

from lskd_plugins.errors import LskdError
from lskd_plugins.nmt.decode import DecodeOptions, Decoder
from lskd_plugins.nmt.seqkd import run_seqkd

# hypotheses of at most 30 tokens: a barely trained teacher babbles up to fairseq's
# default 200 tokens, which makes CPU decoding slow. (Not max_len_a > 0: fairseq applies it to
# the padded length of the batch, so hypotheses would depend on the batching.)
OPTIONS = DecodeOptions(beam=4, max_tokens=500, max_len_b=30, device="cpu")
# the 40 sentences of the test split, in shards of 15 (15 + 15 + 10): small enough for CPU tests,
# large enough that fairseq's length batching reorders them (500 tokens hold about 20 sentences)
SUBSET = "test"


def _lines(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


def _same_files(a: Path, b: Path):
    """Relative paths of every output file under a, each byte-identical to its twin under b
    (seqkd.json aside: it names its own directory and counts the shards of this invocation)."""

    def outputs(root: Path):
        return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "seqkd.json")

    names = outputs(a)
    assert names == outputs(b)
    for rel in names:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), f"{rel} differs"
    return names


@pytest.fixture(scope="module")
def full_run(tiny_mt_data, tiny_teacher_150, tmp_path_factory):
    out = tmp_path_factory.mktemp("seqkd") / "full"
    report = run_seqkd(
        tiny_mt_data.data_bin, str(tiny_teacher_150), out, SUBSET, OPTIONS, shard_size=15, progress=False
    )
    return out, report


def test_one_hypothesis_per_source_line_in_the_original_order(full_run, tiny_mt_data, tiny_teacher_150):
    out, report = full_run
    source = _lines(tiny_mt_data.text_dir / "test.en")
    assert report["complete"] and report["sentences"] == len(source) == 40
    assert _lines(out / "test.en") == source  # the source side, line by line
    hyps = _lines(out / "test.de")
    assert len(hyps) == 40
    assert report["empty_hypotheses"] == 0 and report["failed"] == 0
    # fairseq batches by length; seqkd must put each hypothesis back on its own line: decode each
    # sentence alone (batches of one) and compare
    alone_options = DecodeOptions(batch_size=1, max_len_b=30, device="cpu")
    decoder = Decoder(str(tiny_teacher_150), tiny_mt_data.data_bin, SUBSET, alone_options)
    ids = list(range(40))
    alone = decoder.translate(ids, progress=False)
    assert [decoder.hypothesis_text(alone[i].tokens) for i in ids] == [hyps[i] for i in ids]
    assert len(set(hyps)) > 20  # not vacuous: the lines differ from each other


def test_data_bin_uses_the_teachers_dictionaries_and_copies_other_splits(full_run, tiny_mt_data):
    out, _ = full_run
    data_bin, orig = out / "data-bin", tiny_mt_data.data_bin
    for name in (
        "dict.en.txt",
        "dict.de.txt",
        "valid.en-de.en.bin",
        "valid.en-de.de.idx",
        "train.en-de.de.bin",
        # the source side re-binarized from its text is the original, byte for byte
        "test.en-de.en.bin",
        "test.en-de.en.idx",
    ):
        assert filecmp.cmp(data_bin / name, orig / name, shallow=False), name
    # the target side holds the hypotheses, readable back through fairseq
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(data_bin / "dict.de.txt"))
    ds = data_utils.load_indexed_dataset(str(data_bin / "test.en-de.de"), d)
    assert [d.string(ds[i]) for i in range(len(ds))] == _lines(out / "test.de")


def test_resume_after_interruption_gives_identical_files(full_run, tiny_mt_data, tiny_teacher_150, tmp_path):
    full, _ = full_run
    out = tmp_path / "resumed"
    first = run_seqkd(
        tiny_mt_data.data_bin,
        str(tiny_teacher_150),
        out,
        SUBSET,
        OPTIONS,
        shard_size=15,
        max_shards=1,
        progress=False,
    )
    assert first == {"complete": False, "shards_done": 1, "shards": 3}
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.json"]
    assert not (out / "test.de").exists()
    second = run_seqkd(
        tiny_mt_data.data_bin, str(tiny_teacher_150), out, SUBSET, OPTIONS, shard_size=15, progress=False
    )
    assert second["complete"] and second["shards_decoded_now"] == 2
    compared = _same_files(full, out)
    assert Path("test.de") in compared and Path("data-bin/test.en-de.de.bin") in compared
    # a run killed while writing its last shard: that shard is redone, nothing else
    (out / "shards" / "00002.json").unlink()
    (out / "test.de").unlink()
    third = run_seqkd(
        tiny_mt_data.data_bin, str(tiny_teacher_150), out, SUBSET, OPTIONS, shard_size=15, progress=False
    )
    assert third["shards_decoded_now"] == 1
    _same_files(full, out)


def test_other_settings_do_not_mix_with_existing_shards(full_run, tiny_mt_data, tiny_teacher_150):
    out, _ = full_run
    with pytest.raises(LskdError, match=r"holds results made with other settings \(beam\).*--overwrite"):
        run_seqkd(
            tiny_mt_data.data_bin,
            str(tiny_teacher_150),
            out,
            SUBSET,
            DecodeOptions(beam=2, max_len_b=30, device="cpu"),
            shard_size=15,
            progress=False,
        )


def test_failed_hypotheses_are_counted_and_kept_aligned(tiny_mt_data, tiny_teacher, tmp_path, monkeypatch):
    """Every sentence fails to decode: all 40 are counted, none is dropped; the result is a
    failure (exit 1) unless allow_failures accepts it."""
    from lskd_plugins.errors import LskdFailure
    from lskd_plugins.nmt.decode import Decoder

    def broken(self, batch):
        raise RuntimeError("min_len cannot be larger than max_len")

    monkeypatch.setattr(Decoder, "_generate", broken)
    options = DecodeOptions(max_len_b=30, device="cpu")
    ref = _lines(tiny_mt_data.text_dir / "valid.de")
    with pytest.raises(LskdFailure, match="40 of 40 sentences failed"):
        run_seqkd(
            tiny_mt_data.data_bin, str(tiny_teacher), tmp_path / "ref", "valid", options, progress=False
        )
    assert json.loads((tmp_path / "ref" / "seqkd.json").read_text())["complete"] is False
    report = run_seqkd(
        tiny_mt_data.data_bin,
        str(tiny_teacher),
        tmp_path / "ref",
        "valid",
        options,
        progress=False,
        allow_failures=True,
    )
    assert report["failed"] == 40 and report["replaced_by_reference"] == 40 and report["complete"]
    assert "min_len cannot be larger than max_len" in report["failed_ids"]["7"]
    assert _lines(tmp_path / "ref" / "valid.de") == ref  # each failure replaced by its own reference
    assert _lines(tmp_path / "ref" / "valid.en") == _lines(tiny_mt_data.text_dir / "valid.en")
    manifest = json.loads((tmp_path / "ref" / "seqkd.json").read_text())
    assert manifest["failed"] == 40 and sorted(map(int, manifest["failed_ids"])) == list(range(40))
    kept = run_seqkd(
        tiny_mt_data.data_bin,
        str(tiny_teacher),
        tmp_path / "keep",
        "valid",
        options,
        on_empty="keep",
        progress=False,
        allow_failures=True,
    )
    assert kept["failed"] == 40 and kept["replaced_by_reference"] == 0
    assert (tmp_path / "keep" / "valid.de").read_text() == "\n" * 40


def test_missing_teacher_is_named(tiny_mt_data, tmp_path):
    with pytest.raises(LskdError, match=f"checkpoint not found: {tmp_path / 'nope.pt'}"):
        run_seqkd(tiny_mt_data.data_bin, str(tmp_path / "nope.pt"), tmp_path / "o", "train", OPTIONS)


def test_cli_reports_and_stops_after_max_shards(tiny_mt_data, tiny_teacher, tmp_path, cli_env):
    cmd = [
        "lskd",
        "seqkd",
        "--data",
        str(tiny_mt_data.data_bin),
        "--path",
        str(tiny_teacher),
        "--out",
        str(tmp_path / "cli"),
        "--subset",
        "test",
        "--shard-size",
        "15",
        "--device",
        "cpu",
        "--max-len-b",
        "30",
    ]
    proc = subprocess.run(
        cmd + ["--max-shards", "2"], capture_output=True, text=True, env=cli_env, timeout=300
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "stopped after 2 new shard(s) (--max-shards); 2/3 shards done" in proc.stderr
    # progress in a log: whole-job lines (all 40 sentences, not one shard's), no carriage returns
    assert "seqkd: 30/40 sent (75%)" in proc.stderr and "\r" not in proc.stderr
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seqkd: 40 sentences; 0 empty and 0 failed hypotheses (replaced by the reference)" in proc.stderr
    assert "seqkd: 40/40 sent (100%)" in proc.stderr and "\r" not in proc.stderr
    assert len(_lines(tmp_path / "cli" / "test.de")) == 40


def test_ensemble_of_two_teachers(tiny_mt_data, tiny_teacher, tiny_teacher_150, tmp_path):
    """A:B decodes with both models (fairseq averages their probabilities): one line per sentence."""
    report = run_seqkd(
        tiny_mt_data.data_bin,
        f"{tiny_teacher}:{tiny_teacher_150}",
        tmp_path / "ens",
        SUBSET,
        OPTIONS,
        progress=False,
    )
    manifest = json.loads((tmp_path / "ens" / "seqkd.json").read_text())
    assert manifest["settings"]["path"] == [str(tiny_teacher), str(tiny_teacher_150)]
    assert report["complete"] and len(_lines(tmp_path / "ens" / "test.de")) == 40
    assert _lines(tmp_path / "ens" / "test.en") == _lines(tiny_mt_data.text_dir / "test.en")


def test_workers_split_the_shards_then_one_run_assembles(full_run, tiny_mt_data, tiny_teacher_150, tmp_path):
    full, _ = full_run
    out = tmp_path / "workers"
    for worker in (1, 0):
        report = run_seqkd(
            tiny_mt_data.data_bin,
            str(tiny_teacher_150),
            out,
            SUBSET,
            OPTIONS,
            shard_size=15,
            progress=False,
            num_workers=2,
            worker_id=worker,
        )
        assert report["complete"] is False and not (out / "test.de").exists()
    # worker 1 decoded shard 1, worker 0 shards 0 and 2
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["00000.json", "00001.json", "00002.json"]
    final = run_seqkd(
        tiny_mt_data.data_bin, str(tiny_teacher_150), out, SUBSET, OPTIONS, shard_size=15, progress=False
    )
    assert final["complete"] and final["shards_decoded_now"] == 0
    _same_files(full, out)
    with pytest.raises(LskdError, match=r"--worker-id must lie in \[0, --num-workers\), got 2 of 2"):
        run_seqkd(
            tiny_mt_data.data_bin, str(tiny_teacher_150), out, SUBSET, OPTIONS, num_workers=2, worker_id=2
        )
