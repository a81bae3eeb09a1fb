"""``lskd synth-mt``: determinism, alignment, agreement, synonym frequencies, CLI and errors."""

import json
from collections import Counter
from pathlib import Path

import pytest
from cli_helpers import assert_fails_one_line, snapshot

from lskd_plugins.cli import main as cli_main
from lskd_plugins.errors import LskdError
from lskd_plugins.nmt import synth_mt

SPLITS = ("train", "valid", "test")
# The target grammar's article table, written out independently of the implementation.
NOM = {"m-sg": {"der", "ein"}, "f-sg": {"die", "eine"}, "n-sg": {"das", "ein"}}
ACC = {"m-sg": {"den", "einen"}, "f-sg": {"die", "eine"}, "n-sg": {"das", "ein"}}
DAT = {"m-sg": {"dem", "einem"}, "f-sg": {"der", "einer"}, "n-sg": {"dem", "einem"}}
for table, plural in ((NOM, "die"), (ACC, "die"), (DAT, "den")):
    for g in "mfn":
        table[f"{g}-pl"] = {plural}
ENDING = {"m": "er", "f": "e", "n": "es", "pl": "en"}


def read_lines(path: Path):
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return synth_mt.generate_corpus(out, 20000, 7, valid_size=300, test_size=200)


def test_generate_returns_paths_and_counts(corpus):
    out = Path(corpus["out_dir"])
    assert corpus["counts"] == {"train": 20000, "valid": 300, "test": 200}
    assert set(corpus["files"]) == {f"{s}.{lang}" for s in SPLITS for lang in ("en", "de")}
    for name, path in corpus["files"].items():
        assert Path(path) == out / name and Path(path).is_file()
    assert Path(corpus["synonyms"]).is_file() and Path(corpus["readme"]).is_file()
    readme = Path(corpus["readme"]).read_text()
    assert "--size 20000 --seed 7 --valid 300 --test 200" in readme


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = synth_mt.generate_corpus(tmp_path / "a", 400, 11, valid_size=50, test_size=50)
    synth_mt.generate_corpus(tmp_path / "b", 400, 11, valid_size=50, test_size=50)
    c = synth_mt.generate_corpus(tmp_path / "c", 400, 12, valid_size=50, test_size=50)
    names = [*a["files"], "synonyms.json", "README.md"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in a["files"]:
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name
    assert c["counts"] == a["counts"]


def test_splits_are_separate_streams_independent_of_size(tmp_path):
    small = synth_mt.generate_corpus(tmp_path / "s", 50, 3, valid_size=40, test_size=40)
    large = synth_mt.generate_corpus(tmp_path / "l", 500, 3, valid_size=40, test_size=40)
    for name in ("valid.en", "valid.de", "test.en", "test.de"):
        assert Path(small["files"][name]).read_bytes() == Path(large["files"][name]).read_bytes()
    train = read_lines(Path(large["files"]["train.en"]))
    assert read_lines(Path(small["files"]["train.en"])) == train[:50]
    assert read_lines(Path(large["files"]["valid.en"])) != train[:40]


def test_line_counts_format_and_alignment(corpus):
    roles = synth_mt.target_roles()
    src_nouns = {n.en_sg for n in synth_mt.NOUNS} | {n.en_pl for n in synth_mt.NOUNS}
    conjunctions = {c.en for c in synth_mt.CONJUNCTIONS}
    for split in SPLITS:
        src = read_lines(Path(corpus["files"][f"{split}.en"]))
        tgt = read_lines(Path(corpus["files"][f"{split}.de"]))
        assert len(src) == len(tgt) == corpus["counts"][split]
        for s, t in zip(src, tgt):
            for line in (s, t):
                assert line == line.lower() and line.endswith(" .") and "  " not in line
            s_tok, t_tok = s.split(), t.split()
            assert all(w in roles for w in t_tok), t
            # every source noun has exactly one target noun; a conjunction gives a comma
            assert sum(w in src_nouns for w in s_tok) == sum(roles[w][0] == "noun" for w in t_tok)
            assert any(w in conjunctions for w in s_tok) == ("," in t_tok)


def clause_checks(clause, roles, subordinate):
    """Agreement inside one target clause (list of tokens without ',' and '.')."""
    pos = [roles[w][0] for w in clause]
    verbs = [i for i, p in enumerate(pos) if p == "verb"]
    assert len(verbs) == 1, clause
    nouns = [i for i, p in enumerate(pos) if p == "noun"]
    subject = roles[clause[nouns[0]]][1]
    # verb ending agrees with the subject's number; verb-final in subordinate clauses, verb
    # second (before the subject) after a fronted adverb
    assert roles[clause[verbs[0]]][1] == subject.split("-")[1], clause
    verb = clause[verbs[0]]
    assert verb.endswith("en") if subject.endswith("pl") else verb.endswith("t"), clause
    if subordinate:
        assert verbs[0] == len(clause) - 1, clause
    elif pos[0] == "adv":
        assert verbs[0] == 1, clause
    else:
        assert verbs[0] > nouns[0], clause
    for k, i in enumerate(nouns):
        feature = roles[clause[i]][1]
        gender, number = feature.split("-")
        after_prep = any(p == "prep" for p in pos[:i])
        table = DAT if after_prep else NOM if k == 0 else ACC
        if i > 0 and pos[i - 1] == "art":
            assert clause[i - 1] in table[feature], clause
        else:  # no article: only indefinite plurals
            assert number == "pl", clause
        j = i + 1
        while j < len(clause) and pos[j] == "adj":  # adjectives follow the noun and agree
            expected = ENDING["pl" if number == "pl" else gender]
            assert roles[clause[j]][1] == ("pl" if number == "pl" else gender), clause
            assert clause[j].endswith(expected), clause
            j += 1
    return nouns


def test_target_agreement_and_reordering_hold(corpus):
    roles = synth_mt.target_roles()
    src_adjs = {a.en for a in synth_mt.ADJECTIVES}
    n_sub = n_fronted = 0
    for s, t in zip(
        read_lines(Path(corpus["files"]["train.en"])), read_lines(Path(corpus["files"]["train.de"]))
    ):
        tokens = t.split()[:-1]
        if "," in tokens:
            cut = tokens.index(",")
            main, sub = tokens[:cut], tokens[cut + 2 :]
            assert roles[tokens[cut + 1]][0] == "conj"
            clause_checks(sub, roles, subordinate=True)
            n_sub += 1
        else:
            main = tokens
        n_fronted += roles[main[0]][0] == "adv"
        clause_checks(main, roles, subordinate=False)
        # same number of adjectives on both sides (they move, none is lost)
        assert sum(w in src_adjs for w in s.split()) == sum(roles[w][0] == "adj" for w in t.split())
    assert 0.25 < n_sub / 20000 < 0.35 and 0.15 < n_fronted / 20000 < 0.25


def noun_phrases_source(tokens, nouns, adjs):
    """[(noun, [adjectives in order])] of a source sentence."""
    out, pending = [], []
    for w in tokens:
        if w in adjs:
            pending.append(w)
        elif w in nouns:
            out.append((nouns[w], pending))
            pending = []
    return out


def noun_phrases_target(tokens, roles, noun_en, adj_en):
    """[(source noun, [source adjectives, read back in source order])] of a target sentence."""
    out = []
    for i, w in enumerate(tokens):
        if roles[w][0] == "noun":
            j, group = i + 1, []
            while j < len(tokens) and roles[tokens[j]][0] == "adj":
                group.append(adj_en[roles[tokens[j]][2]])
                j += 1
            out.append((noun_en[w], group[::-1]))
    return out


def test_noun_phrases_translate_in_order_with_mirrored_adjectives(corpus):
    roles = synth_mt.target_roles()
    src_nouns = {}
    noun_en = {}
    for n in synth_mt.NOUNS:
        src_nouns[n.en_sg] = (n.en_sg, "sg")
        src_nouns[n.en_pl] = (n.en_sg, "pl")
        for sg, pl, _ in n.variants:
            noun_en[sg], noun_en[pl] = (n.en_sg, "sg"), (n.en_sg, "pl")
    adj_en = {stem: a.en for a in synth_mt.ADJECTIVES for stem, _ in a.variants}
    adjs = set(adj_en.values())
    n_two = 0
    for s, t in zip(
        read_lines(Path(corpus["files"]["train.en"])), read_lines(Path(corpus["files"]["train.de"]))
    ):
        source = noun_phrases_source(s.split(), src_nouns, adjs)
        assert noun_phrases_target(t.split(), roles, noun_en, adj_en) == source, (s, t)
        n_two += sum(len(group) == 2 for _, group in source)
    assert n_two > 1000


def test_source_agreement():
    pairs = synth_mt.generate_pairs(3000, 5, "train")
    sg = {v.en_sg for v in synth_mt.VERBS}
    singular_nouns = {n.en_sg for n in synth_mt.NOUNS}
    for src, _ in pairs:
        for i, w in enumerate(src):
            if w in ("a", "an"):
                assert (w == "an") == (src[i + 1][0] in "aeiou"), src
            if w in sg:  # 3rd person -s verb right after a singular subject noun
                assert src[i - 1] in singular_nouns, src


def test_morphology_rules():
    assert synth_mt.verb_form("find", "sg") == "findet"
    assert synth_mt.verb_form("jag", "sg") == "jagt"
    assert synth_mt.verb_form("jag", "pl") == "jagen"
    assert [synth_mt.adjective_form("gross", g, "sg") for g in "mfn"] == ["grosser", "grosse", "grosses"]
    assert synth_mt.adjective_form("gross", "f", "pl") == "grossen"
    assert synth_mt.article(False, "acc", "m", "sg") == "einen"
    assert synth_mt.article(False, "dat", "f", "pl") is None


def test_synonym_frequencies_match_configuration(corpus):
    syn = json.loads(Path(corpus["synonyms"]).read_text())
    train_src = Counter(Path(corpus["files"]["train.en"]).read_text().split())
    train_tgt = Counter(Path(corpus["files"]["train.de"]).read_text().split())
    every_word = [w for g in syn["groups"] for w in g["words"]]
    assert len(every_word) == len(set(every_word))  # a token belongs to one group only
    checked = 0
    for g in syn["groups"]:
        assert abs(sum(g["probs"]) - 1.0) < 1e-9 and len(g["words"]) in (2, 3)
        counts = [train_tgt[w] for w in g["words"]]
        if g["pos"] in ("noun", "verb"):  # these source forms translate only to this group
            assert sum(counts) == train_src[g["source"]], g
        if sum(counts) < 1000:
            continue
        for count, p in zip(counts, g["probs"]):
            assert abs(count / sum(counts) - p) < 0.04, (g, counts)
        checked += 1
    assert checked >= 10
    assert sum(len(g["words"]) == 3 for g in syn["groups"]) > 0


def test_suggested_triple_occurs_in_train(corpus):
    syn = json.loads(Path(corpus["synonyms"]).read_text())
    a, b, c = syn["suggested_triple"]
    assert corpus["suggested_triple"] == [a, b, c]
    train = Counter(Path(corpus["files"]["train.de"]).read_text().split())
    assert min(train[a], train[b], train[c]) >= 1000
    assert syn["suggested_triple_train_counts"] == {a: train[a], b: train[b], c: train[c]}
    same = [g for g in syn["groups"] if a in g["words"]]
    assert len(same) == 1 and b in same[0]["words"]
    assert all(c not in g["words"] for g in syn["groups"])
    roles = synth_mt.target_roles()
    assert roles[a][0] == roles[b][0] == roles[c][0] == "noun"


def test_vocabulary_is_compact(corpus):
    assert 150 <= corpus["vocab"]["src"] <= 400
    assert 150 <= corpus["vocab"]["tgt"] <= 400
    src_types = set(Path(corpus["files"]["train.en"]).read_text().split())
    assert len(src_types) <= corpus["vocab"]["src"]
    assert len(synth_mt.target_roles()) <= 400


def test_cli_writes_files(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(
        [
            "synth-mt",
            "--output",
            str(out),
            "--size",
            "120",
            "--seed",
            "4",
            "--valid",
            "30",
            "--test",
            "20",
            "--src",
            "xx",
            "--tgt",
            "yy",
        ]
    )
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    for split, n in (("train", 120), ("valid", 30), ("test", 20)):
        for lang in ("xx", "yy"):
            assert len(read_lines(out / f"{split}.{lang}")) == n
    assert json.loads((out / "synonyms.json").read_text())["tgt"] == "yy"
    direct = synth_mt.generate_corpus(tmp_path / "direct", 120, 4, 30, 20, "xx", "yy")
    assert Path(direct["files"]["train.yy"]).read_bytes() == (out / "train.yy").read_bytes()


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["synth-mt", "--help"])
    assert exc.value.code == 0
    assert "--size" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 0}, "--size must be a positive number of sentences, got 0"),
        ({"size": -3}, "--size must be a positive number of sentences, got -3"),
        ({"valid_size": 0}, "--valid must be a positive number of sentences, got 0"),
        ({"src": "de"}, "--src and --tgt are both 'de'"),
        ({"tgt": "a/b"}, "--tgt 'a/b' is not a usable file suffix"),
    ],
)
def test_bad_input_raises(tmp_path, kwargs, message):
    args = {"out_dir": tmp_path / "x", "size": 10, "seed": 1, **kwargs}
    with pytest.raises(LskdError) as exc:
        synth_mt.generate_corpus(**args)
    assert message in str(exc.value)
    assert not (tmp_path / "x").exists()


def test_output_is_existing_file(tmp_path, capsys):
    path = tmp_path / "file.txt"
    path.write_text("keep me")
    with pytest.raises(LskdError, match="is an existing file; give a directory path"):
        synth_mt.generate_corpus(path, 10, 1)
    assert_fails_one_line(
        ["synth-mt", "--output", str(path), "--size", "10"],
        capsys,
        unchanged=[path],
        must_contain=["is a file, not a folder"],
    )


def test_cli_bad_numbers_are_refused_before_any_work(tmp_path, capsys):
    for argv, text in (
        (["--size", "0"], "--size: expected an integer from 1 to 10000000, got '0'"),
        (["--valid", "-1"], "--valid: expected an integer from 1 to 10000000"),
        (["--test", "nan"], "--test: expected an integer from 1 to 10000000"),
    ):
        assert_fails_one_line(
            ["synth-mt", "--output", str(tmp_path / "o"), *argv], capsys, must_contain=[text]
        )
    assert not (tmp_path / "o").exists()
    assert_fails_one_line(
        ["synth-mt", "--output", str(tmp_path / "o"), "--src", "en", "--tgt", "en"],
        capsys,
        must_contain=["--src and --tgt are both 'en'"],
    )
    assert not (tmp_path / "o").exists()


def test_existing_corpus_is_not_overwritten_without_overwrite(tmp_path, capsys):
    """Class 1: another corpus (other settings) or foreign files in --output are refused;
    the same command again is a no-op rewrite; --overwrite replaces."""
    out = tmp_path / "corpus"
    assert cli_main(["synth-mt", "--output", str(out), "--size", "30", "--seed", "1"]) == 0
    first = snapshot([out])
    assert cli_main(["synth-mt", "--output", str(out), "--size", "30", "--seed", "1"]) == 0
    assert snapshot([out]) == first
    assert_fails_one_line(
        ["synth-mt", "--output", str(out), "--size", "30", "--seed", "2"],
        capsys,
        unchanged=[out],
        must_contain=["holds results made with other settings (seed)", "--overwrite"],
    )
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "train.en").write_text("my own data\n")
    assert_fails_one_line(
        ["synth-mt", "--out", str(foreign), "--size", "30"],
        capsys,
        unchanged=[foreign],
        must_contain=["holds files that lskd did not write"],
    )
    assert cli_main(["synth-mt", "--output", str(out), "--size", "30", "--seed", "2", "--overwrite"]) == 0
    assert snapshot([out]) != first
