"""Data preparation: normalisation, layouts, line-count and missing-file errors, the Multi30k wrapper."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import assert_cmd_fails_one_line, assert_fails_one_line
from fairseq_fixtures import TINY_ARCH, TINY_TRAIN, run_cli, write_parallel_text

from lskd_plugins.cli import main as lskd
from lskd_plugins.errors import LskdError
from lskd_plugins.nmt import prepare as P

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data_prep" / "prepare_multi30k.sh"
TOY_TEST_SETS = {
    "test_2016_flickr": (0, 20),
    "test_2017_flickr": (20, 35),
    "test_2017_mscoco": (35, 46),
    "test_2018_flickr": (46, 60),
}
OFFICIAL = ["test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr"]


def test_normalize_line_nfkc_controls_whitespace():
    assert P.normalize_line("  Ein\u00a0Hund\t läuft\u200b  ﬁx\r ") == "Ein Hund läuft fix"
    assert P.normalize_line("A B", lowercase=True) == "a b"
    assert P.normalize_line("") == ""
    assert (
        P.normalize_line("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645")
        == "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    )


def test_keep_pair_filters_like_clean_corpus():
    assert P.keep_pair("a b", "c d")
    assert not P.keep_pair("", "c")
    assert not P.keep_pair("a", " ")
    assert not P.keep_pair("a b c", "d", max_words=2)
    assert P.keep_pair("a b", "d e f", max_ratio=1.5)
    assert not P.keep_pair("a", "d e", max_ratio=1.5)


def _write(path: Path, lines, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(line + "\n" for line in lines)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _small_multi30k(root: Path, n_train: int = 120) -> Path:
    """A raw dir in Multi30k's layout (gz files) from the toy corpus of fairseq_fixtures."""
    text = write_parallel_text(root / "toy", n_train=n_train, n_valid=20, n_test=60)
    raw = root / "raw"
    for split, name in (("train", "train"), ("valid", "val")):
        for lang in ("en", "de"):
            lines = (text / f"{split}.{lang}").read_text().splitlines()
            _write(raw / f"{name}.{lang}.gz", [line.capitalize() for line in lines], gz=True)
    # the four official test sets, of different sizes, cut from the toy test split
    for name, (start, stop) in TOY_TEST_SETS.items():
        for lang in ("en", "de"):
            lines = (text / f"test.{lang}").read_text().splitlines()[start:stop]
            _write(raw / f"{name}.{lang}.gz", [line.capitalize() for line in lines], gz=True)
    return raw


@pytest.fixture(scope="module")
def multi30k_raw(tmp_path_factory, shared_data_root):
    """$LSKD_SHARED_DATA/multi30k/raw where present (read in place), else a small raw dir we write."""
    shared = shared_data_root / "multi30k" / "raw"
    if (shared / "train.en.gz").is_file():
        return shared
    return _small_multi30k(tmp_path_factory.mktemp("m30k"))


@pytest.fixture(scope="module")
def prepared(multi30k_raw, tmp_path_factory, cli_env):
    out = tmp_path_factory.mktemp("prep") / "multi30k"
    proc = run_cli(
        [
            "bash",
            SCRIPT,
            "--raw-dir",
            multi30k_raw,
            "--out",
            out,
            "--max-lines",
            "200",
            "--vocab-size",
            "600",
        ],
        cli_env,
        timeout=300,
    )
    return out, proc


def test_prepare_multi30k_writes_a_data_bin(prepared, multi30k_raw):
    out, proc = prepared
    raw_lines = {
        split: sum(1 for _ in gzip.open(multi30k_raw / f"{name}.en.gz", "rt", encoding="utf-8"))
        for split, name in (("train", "train"), ("valid", "val"), ("test", "test_2016_flickr"))
    }
    data_bin = out / "data-bin"
    for split in ("train", "valid", "test"):
        for lang in ("en", "de"):
            assert (data_bin / f"{split}.en-de.{lang}.bin").is_file()
            assert (data_bin / f"{split}.en-de.{lang}.idx").is_file()
            expected = min(200, raw_lines[split])  # --max-lines 200 of the corpus actually used
            assert (
                len((out / "text" / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()) == expected
            )
    # joined dictionary: the same symbols on both sides
    assert (data_bin / "dict.en.txt").read_text() == (data_bin / "dict.de.txt").read_text()
    manifest = json.loads((out / "prepare.json").read_text())
    expected = min(200, raw_lines["test"])
    assert manifest["counts"]["test"]["lines"] == expected == manifest["lines"]["test"]["lines"]
    assert "wrote" in proc.stderr + proc.stdout
    # progress in a log: whole-job lines (all pairs of all steps), no carriage-return bar
    assert "\r" not in proc.stdout + proc.stderr
    assert re.search(r"^prepare: (\d+)/\1 pairs \(100%\), .* elapsed", proc.stderr, re.M), proc.stderr


def test_sentencepiece_pieces_decode_back_to_the_normalised_text(prepared):
    import sentencepiece as spm

    out, _ = prepared
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm" / "spm.model"))
    pieces = (out / "spm" / "test.de").read_text(encoding="utf-8").splitlines()
    text = (out / "text" / "test.de").read_text(encoding="utf-8").splitlines()
    assert [sp.decode(p.split()) for p in pieces] == text
    # fairseq's own post-processing of the pieces gives the same text (what lskd bleu uses)
    from fairseq.data.data_utils import post_process

    assert [post_process(p, "sentencepiece") for p in pieces] == text


def test_prepare_is_idempotent_and_refuses_other_settings(prepared, multi30k_raw, cli_env):
    out, _ = prepared
    stamp = (out / "data-bin" / "train.en-de.en.bin").stat().st_mtime_ns
    again = run_cli(
        [
            "bash",
            SCRIPT,
            "--raw-dir",
            multi30k_raw,
            "--out",
            out,
            "--max-lines",
            "200",
            "--vocab-size",
            "600",
        ],
        cli_env,
    )
    assert "nothing to do" in again.stdout
    assert (out / "data-bin" / "train.en-de.en.bin").stat().st_mtime_ns == stamp
    other = run_cli(
        [
            "bash",
            SCRIPT,
            "--raw-dir",
            multi30k_raw,
            "--out",
            out,
            "--max-lines",
            "200",
            "--vocab-size",
            "500",
        ],
        cli_env,
        check=False,
    )
    assert other.returncode == 2
    assert (
        "prepared with other settings (vocab_size differ)" in other.stderr and "--overwrite" in other.stderr
    )


def test_fairseq_train_accepts_the_data_bin(prepared, tmp_path, cli_env):
    out, _ = prepared
    run_cli(
        [
            "fairseq-train",
            out / "data-bin",
            *TINY_ARCH,
            *TINY_TRAIN,
            "--criterion",
            "cross_entropy",
            "--max-update",
            "3",
            "--save-dir",
            tmp_path / "ckpt",
            "--no-save",
        ],
        cli_env,
        timeout=300,
    )


def test_help_of_every_wrapper(cli_env):
    for name in ("prepare_multi30k.sh", "prepare_iwslt14.sh", "prepare_wmt14_en_de.sh"):
        proc = subprocess.run(
            ["bash", REPO / "data_prep" / name, "--help"], capture_output=True, text=True, env=cli_env
        )
        assert proc.returncode == 0
        assert "--raw-dir DIR" in proc.stdout and "--vocab-size" in proc.stdout


def test_mismatched_line_counts_name_both_files(tmp_path, cli_env):
    raw = _small_multi30k(tmp_path, n_train=30)
    lines = gzip.open(raw / "val.de.gz", "rt").read().splitlines()
    _write(raw / "val.de.gz", lines[:-1], gz=True)
    proc = run_cli(["bash", SCRIPT, "--raw-dir", raw, "--out", tmp_path / "out"], cli_env, check=False)
    assert proc.returncode == 2
    assert f"line counts differ: {raw / 'val.en.gz'} has 20 lines, {raw / 'val.de.gz'} has 19" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "data-bin").exists()


def test_missing_raw_files_are_named(tmp_path, cli_env):
    raw = _small_multi30k(tmp_path, n_train=30)
    (raw / "test_2016_flickr.de.gz").unlink()
    (raw / "train.en.gz").unlink()
    proc = run_cli(["bash", SCRIPT, "--raw-dir", raw, "--out", tmp_path / "out"], cli_env, check=False)
    assert proc.returncode == 2
    assert (
        "lacks the files layout multi30k expects (en->de): train.en[.gz], test_2016_flickr.de[.gz]"
        in proc.stderr
    )
    missing_dir = run_cli(
        ["bash", SCRIPT, "--raw-dir", tmp_path / "nope", "--out", tmp_path / "o"], cli_env, check=False
    )
    assert missing_dir.returncode == 2 and "raw directory not found" in missing_dir.stderr


def _small_iwslt14(raw: Path) -> Path:
    """A de-en/ directory shaped like the one in IWSLT'14's de-en.tgz (tags, xml)."""
    de = ["<url>http://x</url>", "<keywords>k</keywords>", "<talkid>1</talkid>", "<title>Titel eins</title>"]
    en = ["<url>http://x</url>", "<keywords>k</keywords>", "<talkid>1</talkid>", "<title>Title one</title>"]
    de += [f"satz {i} ." for i in range(1, 50)]
    en += [f"sentence {i} ." for i in range(1, 50)]
    _write(raw / "train.tags.de-en.de", de)
    _write(raw / "train.tags.de-en.en", en)
    names = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
    for k, name in enumerate(names):
        for lang, word in (("de", "test"), ("en", "probe")):
            _write(
                raw / f"IWSLT14.{name}.de-en.{lang}.xml",
                ['<doc docid="1">', f'<seg id="1"> {word} {k} a\u2019b </seg>', "</doc>"],
            )
    return raw


def test_iwslt14_layout_tags_holdout_and_xml_test(tmp_path):
    """fairseq's split: tag lines dropped, every 23rd kept pair -> valid, five xml files -> test."""
    _small_iwslt14(tmp_path / "de-en")
    cfg = P.PrepareConfig(raw_dir=str(tmp_path), out=str(tmp_path / "out"), layout="iwslt14")
    layout = P.resolve_layout(cfg)
    assert (layout.src, layout.tgt) == ("de", "en")
    resolved = P.resolve_files(tmp_path, layout)
    P.check_line_counts(resolved)
    report = P.write_text(tmp_path / "out", layout, resolved, cfg)
    text = tmp_path / "out" / "text"
    train = (text / "train.de").read_text().splitlines()
    valid = (text / "valid.de").read_text().splitlines()
    # 50 kept pairs (the title and 49 sentences): pairs 23 and 46 -> valid
    assert valid == ["satz 22 .", "satz 45 ."]
    assert train[0] == "Titel eins" and len(train) == 48 and "satz 22 ." not in train
    assert (text / "test.en").read_text().splitlines() == [f"probe {k} a'b" for k in range(5)]
    assert report["train"] == {"lines": 48, "dropped_by_filter": 0}


def test_wmt14_layout_concatenates_corpora_and_reads_sgm(tmp_path):
    for rel, n in (
        ("training/europarl-v7.de-en", 3),
        ("commoncrawl.de-en", 2),
        ("training/news-commentary-v9.de-en", 1),
        ("dev/newstest2013", 2),
    ):
        for lang in ("en", "de"):
            _write(tmp_path / f"{rel}.{lang}", [f"{Path(rel).name} {lang} {i}" for i in range(n)])
    for role, lang in (("src", "en"), ("ref", "de")):
        _write(
            tmp_path / f"test-full/newstest2014-deen-{role}.{lang}.sgm",
            [
                '<srcset setid="newstest2014">',
                f'<seg id="1">{lang} eins</seg>',
                f'<seg id="2">{lang} zwei</seg>',
            ],
        )
    cfg = P.PrepareConfig(raw_dir=str(tmp_path), out=str(tmp_path / "out"), layout="wmt14")
    layout = P.resolve_layout(cfg)
    resolved = P.resolve_files(tmp_path, layout)
    P.check_line_counts(resolved)
    report = P.write_text(tmp_path / "out", layout, resolved, cfg)
    assert report["train"]["lines"] == 6 and report["valid"]["lines"] == 2
    assert (tmp_path / "out" / "text" / "test.de").read_text().splitlines() == ["de eins", "de zwei"]
    with pytest.raises(LskdError, match=r"newstest2014-deen-ref\.en\.sgm"):
        P.resolve_files(
            tmp_path,
            P.resolve_layout(P.PrepareConfig(raw_dir="", out="", layout="wmt14", src="de", tgt="en")),
        )


def test_plain_layout_needs_every_split():
    with pytest.raises(LskdError, match="layout plain needs --split for valid, test"):
        P.resolve_layout(
            P.PrepareConfig(raw_dir="", out="", layout="plain", split_overrides={"train": ["train"]})
        )


@pytest.mark.skipif(not (shutil.which("curl") or shutil.which("wget")), reason="needs curl or wget")
def test_download_step_without_raw_dir(tmp_path, cli_env):
    """The real download code, fed from a file:// URL (no network): fetched once, kept, then prepared."""
    mirror = _small_multi30k(tmp_path / "mirror", n_train=30)
    out = tmp_path / "out"
    env = {**cli_env, "MULTI30K_URL": f"file://{mirror}"}
    proc = run_cli(["bash", SCRIPT, "--out", out, "--vocab-size", "200"], env)
    for name in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "de"):
            assert (out / "raw" / f"{name}.{lang}.gz").read_bytes() == (
                mirror / f"{name}.{lang}.gz"
            ).read_bytes()
    assert (out / "data-bin" / "test.en-de.de.bin").is_file()
    again = run_cli(["bash", SCRIPT, "--out", out, "--vocab-size", "200"], env)
    assert f"have {out}/raw/train.en.gz" in again.stdout and "nothing to do" in again.stdout
    assert "downloading" in proc.stdout
    broken = run_cli(
        ["bash", SCRIPT, "--out", tmp_path / "o2"],
        {**env, "MULTI30K_URL": f"file://{tmp_path}/nope"},
        check=False,
    )
    assert broken.returncode == 2
    assert (
        f"download failed: file://{tmp_path}/nope/train.en.gz (give --raw-dir to work offline)"
        in broken.stderr
    )


@pytest.mark.skipif(not shutil.which("curl") and not shutil.which("wget"), reason="needs curl or wget")
def test_prepare_iwslt14_downloads_and_unpacks(tmp_path, cli_env):
    """prepare_iwslt14.sh end to end from a file:// copy of a tiny de-en.tgz."""
    _small_iwslt14(tmp_path / "src" / "de-en")
    subprocess.run(
        ["tar", "-czf", str(tmp_path / "de-en.tgz"), "-C", str(tmp_path / "src"), "de-en"], check=True
    )
    out = tmp_path / "out"
    run_cli(
        ["bash", REPO / "data_prep" / "prepare_iwslt14.sh", "--out", out, "--vocab-size", "100"],
        {**cli_env, "IWSLT14_URL": f"file://{tmp_path}/de-en.tgz"},
    )
    assert (out / "raw" / "de-en" / "train.tags.de-en.de").is_file()
    assert (out / "text" / "valid.de").read_text().splitlines() == ["satz 22 .", "satz 45 ."]
    assert (out / "data-bin" / "train.de-en.de.bin").is_file()  # direction de -> en by default


# ----------------------------------------------------------------------------- Multi30k's test sets
def _test_sets(data_bin: Path) -> list:
    return [line.split("\t") for line in (data_bin / "test_sets.tsv").read_text().splitlines()]


def test_shared_raw_files_give_four_named_test_sets(shared_data, tmp_path, cli_env):
    """From $LSKD_SHARED_DATA/multi30k/raw (a 50-pair slice of each split: seconds, not minutes)."""
    if not (shared_data / "multi30k" / "raw" / "train.en.gz").is_file():
        pytest.skip(f"{shared_data / 'multi30k' / 'raw'} absent")
    out = tmp_path / "m30k"
    run_cli(
        ["bash", SCRIPT, "--raw-dir", shared_data / "multi30k" / "raw", "--output", out]
        + ["--max-lines", "50", "--vocab-size", "400", "--no-progress"],
        cli_env,
        timeout=300,
    )
    assert _test_sets(out / "data-bin") == [[f"test{i or ''}", n] for i, n in enumerate(OFFICIAL)]
    for i, name in enumerate(OFFICIAL):
        raw = gzip.open(shared_data / "multi30k" / "raw" / f"{name}.de.gz", "rt", encoding="utf-8")
        first = P.normalize_line(raw.readline())
        assert (out / "text" / f"test{i or ''}.de").read_text().splitlines()[0] == first
        assert (out / "data-bin" / f"test{i or ''}.en-de.de.bin").is_file()


@pytest.fixture(scope="module")
def toy_m30k(tmp_path_factory, cli_env):
    """The toy Multi30k (four test sets of 20, 15, 11, 14 pairs), prepared, and a 2-update model."""
    root = tmp_path_factory.mktemp("toy_m30k")
    raw = _small_multi30k(root, n_train=60)
    out = root / "prep"
    run_cli(["bash", SCRIPT, "--raw-dir", raw, "--output", out, "--vocab-size", "300"], cli_env)
    run_cli(
        ["fairseq-train", out / "data-bin", *TINY_ARCH, *TINY_TRAIN, "--criterion", "cross_entropy"]
        + ["--max-update", "2", "--save-dir", root / "ckpt", "--no-last-checkpoints"],
        cli_env,
        timeout=300,
    )
    return out, root / "ckpt" / "checkpoint_best.pt"


def test_bleu_subset_takes_the_test_sets_name(toy_m30k, tmp_path, capsys):
    out, ckpt = toy_m30k
    assert _test_sets(out / "data-bin")[2] == ["test2", "test_2017_mscoco"]
    results = {}
    for subset in ("test_2017_mscoco", "test2"):
        argv = ["bleu", "--data", str(out / "data-bin"), "--path", str(ckpt), "--subset", subset]
        argv += ["--device", "cpu", "--max-len-b", "10", "--no-progress", "--output", str(tmp_path / subset)]
        assert lskd(argv) == 0
        results[subset] = json.loads(capsys.readouterr().out)
    named = results["test_2017_mscoco"]
    assert named["subset"] == "test2" and named["test_set"] == "test_2017_mscoco"
    assert named["counts"]["sentences"] == 11  # the mscoco slice, not test_2016_flickr's 20
    refs = (tmp_path / "test_2017_mscoco" / "test2.ref").read_text().splitlines()
    mscoco = (out / "text" / "test2.de").read_text().splitlines()
    assert len(refs) == len(mscoco) == 11
    # the references are mscoco's text (pieces outside the toy dictionary come back as <<unk>>)
    assert all(r == t or "<<unk>>" in r for r, t in zip(refs, mscoco))
    assert sum(r == t for r, t in zip(refs, mscoco)) >= 5
    assert named["sacrebleu"] == results["test2"]["sacrebleu"]


def test_earlier_preparation_is_refused_with_the_upgrade(toy_m30k, tmp_path, cli_env, capsys):
    prepared_now, ckpt = toy_m30k
    old = tmp_path / "old"
    shutil.copytree(prepared_now, old)
    manifest = json.loads((old / "prepare.json").read_text())
    (old / "prepare.json").write_text(json.dumps({"layout": "multi30k", "fingerprint": {"hash": "x"}}))
    (old / "data-bin" / "test_sets.tsv").unlink()
    raw = manifest["raw_dir"]
    cmd = ["bash", SCRIPT, "--raw-dir", raw, "--output", old, "--vocab-size", "300"]
    assert_cmd_fails_one_line(
        cmd, cli_env, unchanged=[old], must_contain=["prepared by an earlier lskd", "--overwrite"]
    )
    assert_fails_one_line(
        ["bleu", "--data", str(old / "data-bin"), "--path", str(ckpt), "--subset", "test_2017_mscoco"],
        capsys,
        must_contain=["'test_2017_mscoco' not found", "prepare it again", "--overwrite"],
    )
    run_cli([*cmd, "--overwrite"], cli_env)
    assert _test_sets(old / "data-bin")[3] == ["test3", "test_2018_flickr"]


def test_one_invalid_utf8_byte_names_file_line_and_byte(tmp_path, cli_env):
    raw = _small_multi30k(tmp_path, n_train=30)
    lines = gzip.open(raw / "val.de.gz", "rt", encoding="utf-8").read().splitlines()
    blob = "".join(line + "\n" for line in lines).encode("utf-8").split(b"\n")
    blob[4] = blob[4][:2] + b"\xff" + blob[4][2:]  # one bad byte, third byte of line 5
    with gzip.open(raw / "val.de.gz", "wb") as f:
        f.write(b"\n".join(blob))
    proc = run_cli(["bash", SCRIPT, "--raw-dir", raw, "--out", tmp_path / "out"], cli_env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"lskd: error: raw file {raw / 'val.de.gz'}, line 5: byte 0xff at byte 3 of the line is not valid "
        "UTF-8; convert the file to UTF-8 or fix that line"
    )
    assert not (tmp_path / "out" / "data-bin").exists()


def test_plain_layout_writes_test_sets_tsv(tmp_path, cli_env):
    """--layout plain: its help promises a data-bin with test_sets.tsv; each test split is named
    after its raw prefix."""
    raw = _small_multi30k(tmp_path, n_train=40)
    out = tmp_path / "plain"
    argv = [
        "lskd",
        "prepare-mt",
        "--layout",
        "plain",
        "--raw-dir",
        raw,
        "--output",
        out,
        "--vocab-size",
        "200",
    ]
    argv += ["--split", "train=train", "--split", "valid=val", "--split", "test=test_2017_mscoco"]
    run_cli(argv, cli_env)
    assert (out / "data-bin" / "test_sets.tsv").read_text() == "test\ttest_2017_mscoco\n"
    from lskd_plugins.nmt.inputs import resolve_subset

    assert resolve_subset(out / "data-bin", "test_2017_mscoco") == ("test", "test_2017_mscoco")
