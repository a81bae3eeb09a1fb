"""``lskd synth-mt``: the embedded synthetic English -> German-like parallel corpus.

Why it exists: the NMT half of the study must run without downloads, and the diffusion analysis
needs target tokens that are *semantically similar* next to tokens that are not. The grammar,
reordering, agreement and near-synonym rules are described in ONE place, docs/synth_mt.md; the
word lists below are the data those rules draw from.

Only the standard library: every split has its own ``random.Random`` stream derived from the
seed, so the same seed gives byte-identical files, and valid/test do not depend on ``--size``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from lskd_plugins.errors import LskdError, positive_int
from lskd_plugins.files import claim_output, write_text_atomic
from lskd_plugins.nmt.options import add_output_option, add_overwrite_option, require_output

GENDERS = ("m", "f", "n")
NUMBERS = ("sg", "pl")
CASES = ("nom", "acc", "dat")

# (definite, case) -> gender or "pl" -> article; None: no article (indefinite plural).
ARTICLES: Dict[Tuple[bool, str], Dict[str, str | None]] = {
    (True, "nom"): {"m": "der", "f": "die", "n": "das", "pl": "die"},
    (True, "acc"): {"m": "den", "f": "die", "n": "das", "pl": "die"},
    (True, "dat"): {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
    (False, "nom"): {"m": "ein", "f": "eine", "n": "ein", "pl": None},
    (False, "acc"): {"m": "einen", "f": "eine", "n": "ein", "pl": None},
    (False, "dat"): {"m": "einem", "f": "einer", "n": "einem", "pl": None},
}
ADJ_ENDINGS = {"m": "er", "f": "e", "n": "es", "pl": "en"}


@dataclass(frozen=True)
class Noun:
    en_sg: str
    en_pl: str
    gender: str
    variants: Tuple[Tuple[str, str, float], ...]  # (target singular, target plural, probability)


@dataclass(frozen=True)
class Verb:
    en_sg: str
    en_pl: str
    variants: Tuple[Tuple[str, float], ...]  # (target stem, probability)


@dataclass(frozen=True)
class Word:
    """Adjective (variants are stems), adverb, preposition or conjunction (variants are words)."""

    en: str
    variants: Tuple[Tuple[str, float], ...]


def _noun(en: str, gender: str, *variants: Tuple[str, float]) -> Noun:
    sg, pl = en.split()
    return Noun(sg, pl, gender, tuple((*v.split(), p) for v, p in variants))


def _verb(en: str, *variants: Tuple[str, float]) -> Verb:
    sg, pl = en.split()
    return Verb(sg, pl, tuple(variants))


def _word(en: str, *variants: Tuple[str, float]) -> Word:
    return Word(en, tuple(variants))


# Lists are in order of frequency (Zipf-like weights by rank). Synonym groups share gender.
NOUNS: Tuple[Noun, ...] = (
    _noun("man men", "m", ("mann maenner", 0.6), ("herr herren", 0.3), ("kerl kerle", 0.1)),
    _noun("apple apples", "m", ("apfel aepfel", 1.0)),
    _noun("woman women", "f", ("frau frauen", 0.7), ("dame damen", 0.3)),
    _noun("dog dogs", "m", ("hund hunde", 1.0)),
    _noun("cat cats", "f", ("katze katzen", 0.7), ("mieze miezen", 0.3)),
    _noun("house houses", "n", ("haus haeuser", 1.0)),
    _noun("car cars", "n", ("auto autos", 0.7), ("fahrzeug fahrzeuge", 0.3)),
    _noun("child children", "n", ("kind kinder", 1.0)),
    _noun("forest forests", "m", ("wald waelder", 0.6), ("forst forste", 0.3), ("hain haine", 0.1)),
    _noun("book books", "n", ("buch buecher", 1.0)),
    _noun(
        "friend friends",
        "m",
        ("freund freunde", 0.6),
        ("kamerad kameraden", 0.3),
        ("gefaehrte gefaehrten", 0.1),
    ),
    _noun("city cities", "f", ("stadt staedte", 1.0)),
    _noun("street streets", "f", ("strasse strassen", 0.6), ("gasse gassen", 0.3), ("allee alleen", 0.1)),
    _noun("boy boys", "m", ("junge jungen", 0.6), ("knabe knaben", 0.3), ("bub buben", 0.1)),
    _noun("garden gardens", "m", ("garten gaerten", 1.0)),
    _noun("horse horses", "n", ("pferd pferde", 0.7), ("ross rosse", 0.3)),
    _noun("table tables", "m", ("tisch tische", 1.0)),
    _noun("river rivers", "m", ("fluss fluesse", 0.7), ("strom stroeme", 0.3)),
    _noun("bird birds", "m", ("vogel voegel", 1.0)),
    _noun("box boxes", "f", ("kiste kisten", 0.6), ("truhe truhen", 0.3), ("schachtel schachteln", 0.1)),
    _noun("ship ships", "n", ("schiff schiffe", 0.7), ("boot boote", 0.3)),
    _noun("door doors", "f", ("tuer tueren", 1.0)),
    _noun("flower flowers", "f", ("blume blumen", 0.7), ("bluete blueten", 0.3)),
    _noun("village villages", "n", ("dorf doerfer", 1.0)),
    _noun("stone stones", "m", ("stein steine", 0.7), ("fels felsen", 0.3)),
    _noun("doctor doctors", "m", ("arzt aerzte", 0.7), ("doktor doktoren", 0.3)),
    _noun("gift gifts", "n", ("geschenk geschenke", 0.7), ("praesent praesente", 0.3)),
    _noun("path paths", "m", ("weg wege", 0.7), ("pfad pfade", 0.3)),
    _noun("king kings", "m", ("koenig koenige", 1.0)),
    _noun("queen queens", "f", ("koenigin koeniginnen", 1.0)),
    _noun("mountain mountains", "m", ("berg berge", 1.0)),
    _noun("song songs", "n", ("lied lieder", 1.0)),
    _noun("student students", "m", ("student studenten", 1.0)),
    _noun("farmer farmers", "m", ("bauer bauern", 1.0)),
    _noun("mouse mice", "f", ("maus maeuse", 1.0)),
    _noun("cow cows", "f", ("kuh kuehe", 1.0)),
    _noun("bridge bridges", "f", ("bruecke bruecken", 1.0)),
    _noun("picture pictures", "n", ("bild bilder", 1.0)),
    _noun("bottle bottles", "f", ("flasche flaschen", 1.0)),
    _noun("lake lakes", "m", ("see seen", 1.0)),
    _noun("hat hats", "m", ("hut huete", 1.0)),
    _noun("letter letters", "m", ("brief briefe", 1.0)),
)

VERBS: Tuple[Verb, ...] = (
    _verb("sees see", ("erblick", 0.6), ("entdeck", 0.3), ("sicht", 0.1)),
    _verb("likes like", ("lieb", 0.7), ("verehr", 0.3)),
    _verb("finds find", ("find", 1.0)),
    _verb("chases chase", ("jag", 0.6), ("verfolg", 0.3), ("hetz", 0.1)),
    _verb("buys buy", ("kauf", 0.7), ("ersteh", 0.3)),
    _verb("visits visit", ("besuch", 1.0)),
    _verb("watches watch", ("beobacht", 0.6), ("betracht", 0.3), ("beaeug", 0.1)),
    _verb("hears hear", ("hoer", 1.0)),
    _verb("asks ask", ("frag", 1.0)),
    _verb("shows show", ("zeig", 1.0)),
    _verb("fetches fetch", ("hol", 1.0)),
    _verb("sends send", ("schick", 0.7), ("send", 0.3)),
    _verb("paints paint", ("mal", 1.0)),
    _verb("builds build", ("bau", 1.0)),
    _verb("follows follow", ("folg", 1.0)),
    _verb("cleans clean", ("putz", 0.7), ("reinig", 0.3)),
    _verb("greets greet", ("gruess", 1.0)),
    _verb("praises praise", ("lob", 1.0)),
    _verb("pushes push", ("schieb", 0.7), ("drueck", 0.3)),
    _verb("needs need", ("brauch", 1.0)),
    _verb("hates hate", ("hass", 1.0)),
    _verb("calls call", ("ruf", 1.0)),
    _verb("brings bring", ("bring", 1.0)),
    _verb("sells sell", ("verkauf", 1.0)),
    _verb("pulls pull", ("zieh", 1.0)),
    _verb("kisses kiss", ("kuess", 1.0)),
    _verb("wakes wake", ("weck", 1.0)),
)

ADJECTIVES: Tuple[Word, ...] = (
    _word("big", ("gross", 0.6), ("riesig", 0.3), ("gewaltig", 0.1)),
    _word("small", ("klein", 0.7), ("winzig", 0.3)),
    _word("old", ("alt", 1.0)),
    _word("red", ("rot", 1.0)),
    _word("happy", ("froh", 0.6), ("gluecklich", 0.3), ("heiter", 0.1)),
    _word("new", ("neu", 1.0)),
    _word("beautiful", ("schoen", 0.6), ("huebsch", 0.3), ("reizend", 0.1)),
    _word("black", ("schwarz", 1.0)),
    _word("fast", ("schnell", 0.7), ("rasch", 0.3)),
    _word("white", ("weiss", 1.0)),
    _word("sad", ("traurig", 0.7), ("betruebt", 0.3)),
    _word("blue", ("blau", 1.0)),
    _word("clever", ("klug", 0.7), ("schlau", 0.3)),
    _word("green", ("gruen", 1.0)),
    _word("quiet", ("still", 0.7), ("ruhig", 0.3)),
    _word("slow", ("langsam", 1.0)),
    _word("brave", ("mutig", 0.6), ("tapfer", 0.3), ("kuehn", 0.1)),
    _word("cold", ("kalt", 1.0)),
    _word("strange", ("seltsam", 0.7), ("merkwuerdig", 0.3)),
    _word("warm", ("warm", 1.0)),
    _word("ugly", ("haesslich", 1.0)),
    _word("strong", ("stark", 1.0)),
    _word("rich", ("reich", 1.0)),
    _word("poor", ("arm", 1.0)),
    _word("loud", ("laut", 1.0)),
    _word("heavy", ("schwer", 1.0)),
)

ADVERBS: Tuple[Word, ...] = (
    _word("today", ("heute", 1.0)),
    _word("often", ("oft", 0.7), ("haeufig", 0.3)),
    _word("yesterday", ("gestern", 1.0)),
    _word("sometimes", ("manchmal", 1.0)),
    _word("tomorrow", ("morgen", 1.0)),
)

PREPOSITIONS: Tuple[Word, ...] = (
    _word("in", ("in", 1.0)),
    _word("near", ("bei", 0.7), ("neben", 0.3)),
    _word("on", ("auf", 1.0)),
    _word("with", ("mit", 1.0)),
    _word("behind", ("hinter", 1.0)),
    _word("under", ("unter", 1.0)),
    _word("from", ("von", 1.0)),
)

CONJUNCTIONS: Tuple[Word, ...] = (
    _word("because", ("weil", 1.0)),
    _word("while", ("waehrend", 1.0)),
    _word("when", ("wenn", 0.7), ("als", 0.3)),
)


@dataclass(frozen=True)
class GrammarConfig:
    """Probabilities of the optional parts; the defaults give ~12 source tokens a sentence."""

    p_adverb: float = 0.2
    p_subordinate: float = 0.3
    p_pp: float = 0.35
    p_plural: float = 0.3
    p_definite: float = 0.6
    p_one_adjective: float = 0.4
    p_two_adjectives: float = 0.15
    zipf_exponent: float = 0.8


def noun_form(variant: Tuple[str, str, float], number: str) -> str:
    return variant[0] if number == "sg" else variant[1]


def verb_form(stem: str, number: str) -> str:
    """3rd person present: -t (-et after d/t) in the singular, -en in the plural."""
    if number == "pl":
        return stem + "en"
    return stem + ("et" if stem[-1] in "dt" else "t")


def adjective_form(stem: str, gender: str, number: str) -> str:
    return stem + ADJ_ENDINGS["pl" if number == "pl" else gender]


def article(definite: bool, case: str, gender: str, number: str) -> str | None:
    return ARTICLES[(definite, case)]["pl" if number == "pl" else gender]


def target_roles() -> Dict[str, Tuple[str, str, str]]:
    """Every target word -> (part of speech, feature, lemma); raises if a word is ambiguous.

    Features: nouns ``m-sg``/``f-pl``..., adjectives ``m``/``f``/``n``/``pl`` (agreement
    class), verbs ``sg``/``pl``. Tests parse the output with this map, so it must be unique.
    """
    roles: Dict[str, Tuple[str, str, str]] = {}

    def add(word: str, role: Tuple[str, str, str]) -> None:
        if roles.setdefault(word, role) != role:
            raise AssertionError(f"target word {word!r} is both {roles[word]} and {role}")

    for noun in NOUNS:
        for variant in noun.variants:
            for number in NUMBERS:
                add(noun_form(variant, number), ("noun", f"{noun.gender}-{number}", variant[0]))
    for verb in VERBS:
        for stem, _ in verb.variants:
            for number in NUMBERS:
                add(verb_form(stem, number), ("verb", number, stem))
    for adj in ADJECTIVES:
        for stem, _ in adj.variants:
            for key in ADJ_ENDINGS:
                add(adjective_form(stem, key, "pl" if key == "pl" else "sg"), ("adj", key, stem))
    for table in ARTICLES.values():
        for art in table.values():
            if art is not None:
                roles.setdefault(art, ("art", "", art))
                if roles[art][0] != "art":
                    raise AssertionError(f"article {art!r} clashes with {roles[art]}")
    for pos, words in (("adv", ADVERBS), ("prep", PREPOSITIONS), ("conj", CONJUNCTIONS)):
        for word in words:
            for w, _ in word.variants:
                add(w, (pos, "", w))
    for punct in (",", "."):
        add(punct, ("punct", "", punct))
    return roles


class _Picker:
    """Draws from a fixed list with fixed weights using only ``rng.random()`` (stable forever)."""

    def __init__(self, items: Sequence, weights: Sequence[float]):
        self.items = list(items)
        self.cum = list(accumulate(weights))

    def __call__(self, rng: random.Random):
        i = bisect.bisect_right(self.cum, rng.random() * self.cum[-1])
        return self.items[min(i, len(self.items) - 1)]


def _zipf_picker(items: Sequence, exponent: float) -> _Picker:
    return _Picker(items, [1.0 / (rank + 1) ** exponent for rank in range(len(items))])


def _variant_picker(variants: Sequence[tuple]) -> _Picker:
    return _Picker(variants, [v[-1] for v in variants])


class _Generator:
    def __init__(self, cfg: GrammarConfig):
        self.cfg = cfg
        self.noun = _zipf_picker(NOUNS, cfg.zipf_exponent)
        self.verb = _zipf_picker(VERBS, cfg.zipf_exponent)
        self.adj = _zipf_picker(ADJECTIVES, cfg.zipf_exponent)
        self.adverb = _zipf_picker(ADVERBS, cfg.zipf_exponent)
        self.prep = _zipf_picker(PREPOSITIONS, cfg.zipf_exponent)
        self.conj = _zipf_picker(CONJUNCTIONS, cfg.zipf_exponent)
        self.variant = {
            id(w): _variant_picker(w.variants)
            for w in (*NOUNS, *VERBS, *ADJECTIVES, *ADVERBS, *PREPOSITIONS, *CONJUNCTIONS)
        }

    def pick_variant(self, rng: random.Random, word):
        return self.variant[id(word)](rng)

    def noun_phrase(self, rng: random.Random, case: str) -> Tuple[List[str], List[str], str]:
        cfg = self.cfg
        noun = self.noun(rng)
        number = "pl" if rng.random() < cfg.p_plural else "sg"
        definite = rng.random() < cfg.p_definite
        u = rng.random()
        n_adj = 2 if u < cfg.p_two_adjectives else 1 if u < cfg.p_two_adjectives + cfg.p_one_adjective else 0
        adjs: List[Word] = []
        while len(adjs) < n_adj:
            a = self.adj(rng)
            if a not in adjs:
                adjs.append(a)
        src_words = [a.en for a in adjs] + [noun.en_sg if number == "sg" else noun.en_pl]
        src = ["the"] if definite else []
        if not definite and number == "sg":
            src = ["an" if src_words[0][0] in "aeiou" else "a"]
        tgt = []
        art = article(definite, case, noun.gender, number)
        if art is not None:
            tgt.append(art)
        tgt.append(noun_form(self.pick_variant(rng, noun), number))
        for a in reversed(adjs):  # mirrored order after the noun
            tgt.append(adjective_form(self.pick_variant(rng, a)[0], noun.gender, number))
        return src + src_words, tgt, number

    def clause(self, rng: random.Random, *, fronted: bool, subordinate: bool):
        subj_src, subj_tgt, number = self.noun_phrase(rng, "nom")
        verb = self.verb(rng)
        obj_src, obj_tgt, _ = self.noun_phrase(rng, "acc")
        pp_src: List[str] = []
        pp_tgt: List[str] = []
        if rng.random() < self.cfg.p_pp:
            prep = self.prep(rng)
            np_src, np_tgt, _ = self.noun_phrase(rng, "dat")
            pp_src = [prep.en] + np_src
            pp_tgt = [self.pick_variant(rng, prep)[0]] + np_tgt
        v_src = verb.en_sg if number == "sg" else verb.en_pl
        v_tgt = verb_form(self.pick_variant(rng, verb)[0], number)
        src = subj_src + [v_src] + obj_src + pp_src
        if subordinate:
            tgt = subj_tgt + obj_tgt + pp_tgt + [v_tgt]
        elif fronted:
            tgt = [v_tgt] + subj_tgt + obj_tgt + pp_tgt
        else:
            tgt = subj_tgt + [v_tgt] + obj_tgt + pp_tgt
        return src, tgt

    def sentence(self, rng: random.Random) -> Tuple[List[str], List[str]]:
        src: List[str] = []
        tgt: List[str] = []
        fronted = rng.random() < self.cfg.p_adverb
        if fronted:
            adverb = self.adverb(rng)
            src.append(adverb.en)
            tgt.append(self.pick_variant(rng, adverb)[0])
        s, t = self.clause(rng, fronted=fronted, subordinate=False)
        src += s
        tgt += t
        if rng.random() < self.cfg.p_subordinate:
            conj = self.conj(rng)
            s, t = self.clause(rng, fronted=False, subordinate=True)
            src += [conj.en] + s
            tgt += [",", self.pick_variant(rng, conj)[0]] + t
        return src + ["."], tgt + ["."]


def split_rng(seed: int, split: str) -> random.Random:
    """One independent stream per split (string seeds are hashed with SHA-512: stable)."""
    return random.Random(f"lskd-synth-mt:{seed}:{split}")


def generate_pairs(
    n: int, seed: int, split: str = "train", cfg: GrammarConfig = GrammarConfig()
) -> List[Tuple[List[str], List[str]]]:
    """``n`` (source tokens, target tokens) pairs of one split, deterministic in (seed, split)."""
    gen = _Generator(cfg)
    rng = split_rng(seed, split)
    return [gen.sentence(rng) for _ in range(n)]


def synonym_groups() -> List[dict]:
    """Groups of near-synonym target *tokens* (one per source form), with their probabilities."""
    groups = []

    def add(pos: str, source: str, feature: str, words: List[str], probs: List[float]) -> None:
        groups.append({"pos": pos, "source": source, "feature": feature, "words": words, "probs": probs})

    for noun in NOUNS:
        if len(noun.variants) > 1:
            probs = [v[2] for v in noun.variants]
            add("noun", noun.en_sg, f"{noun.gender}-sg", [v[0] for v in noun.variants], probs)
            add("noun", noun.en_pl, f"{noun.gender}-pl", [v[1] for v in noun.variants], probs)
    for verb in VERBS:
        if len(verb.variants) > 1:
            probs = [v[1] for v in verb.variants]
            add("verb", verb.en_sg, "sg", [verb_form(v[0], "sg") for v in verb.variants], probs)
            add("verb", verb.en_pl, "pl", [verb_form(v[0], "pl") for v in verb.variants], probs)
    for adj in ADJECTIVES:
        if len(adj.variants) > 1:
            probs = [v[1] for v in adj.variants]
            for key in ADJ_ENDINGS:
                number = "pl" if key == "pl" else "sg"
                add("adj", adj.en, key, [adjective_form(v[0], key, number) for v in adj.variants], probs)
    for pos, words in (("adv", ADVERBS), ("prep", PREPOSITIONS), ("conj", CONJUNCTIONS)):
        for word in words:
            if len(word.variants) > 1:
                add(pos, word.en, "", [v[0] for v in word.variants], [v[1] for v in word.variants])
    return groups


def suggest_triple(groups: List[dict], counts: Counter) -> List[str]:
    """(a, b, c): the two most frequent words of the singular-noun group whose runner-up is most
    frequent in ``counts`` (similar pair), and the most frequent singular noun of no group
    (dissimilar). Falls back to lexicon order where counts are empty."""
    noun_groups = [g for g in groups if g["pos"] == "noun" and g["feature"].endswith("-sg")]

    def ranked(g):
        return sorted(g["words"], key=lambda w: (-counts[w], g["words"].index(w)))

    best = max(noun_groups, key=lambda g: (counts[ranked(g)[1]], -noun_groups.index(g)))
    a, b = ranked(best)[:2]
    in_groups = {w for g in groups for w in g["words"]}
    singles = [n.variants[0][0] for n in NOUNS if n.variants[0][0] not in in_groups]
    c = max(singles, key=lambda w: (counts[w], -singles.index(w)))
    return [a, b, c]


def _check_lang(name: str, flag: str) -> None:
    if not name or any(ch in name for ch in "./\\ \t\n") or name.startswith("-"):
        raise LskdError(f"{flag} {name!r} is not a usable file suffix; use a short code like 'en' or 'de'")


def _json_one_group_a_line(obj: dict) -> str:
    """Indented JSON, but each synonym group on one line (readable, diffable)."""
    lines = []
    for key, value in obj.items():
        if key == "groups":
            inner = ",\n".join("  " + json.dumps(g, ensure_ascii=False) for g in value)
            lines.append(f' "groups": [\n{inner}\n ]')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _readme(seed, sizes, src, tgt, vocab, overlap, triple, cfg: GrammarConfig) -> str:
    size_lines = "\n".join(f"| {split} | {n} |" for split, n in sizes.items())
    return f"""# Synthetic parallel corpus ({src} -> {tgt})

Written by `lskd synth-mt --output DIR --size {sizes["train"]} --seed {seed} --valid {sizes["valid"]} \
--test {sizes["test"]} --src {src} --tgt {tgt}`; the same command rewrites byte-identical files.
Pure standard-library generator (`lskd_plugins/nmt/synth_mt.py`):
English-like source, German-like target, one sentence a line, space-tokenised, lowercase.

- Grammar, reordering, agreement and near-synonyms: docs/synth_mt.md of lskd. The synonym
  groups are in `synonyms.json`, with the suggested analysis triple {triple}
  (two similar words, one dissimilar).
- Options: {cfg}.
- Streams: each split has its own random stream of seed {seed}, so valid/test do not depend
  on the train size. Source sentences of valid/test that also occur in train: {overlap["valid"]} / \
{overlap["test"]}.

| split | sentences |
|---|---|
{size_lines}

Vocabulary (types over all splits): {src} {vocab["src"]}, {tgt} {vocab["tgt"]}.
"""


def check_arguments(size: int, seed: int, valid_size: int, test_size: int, src: str, tgt: str) -> None:
    for value, flag in ((size, "--size"), (valid_size, "--valid"), (test_size, "--test")):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise LskdError(f"{flag} must be a positive number of sentences, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise LskdError(f"--seed must be an integer, got {seed!r}")
    _check_lang(src, "--src")
    _check_lang(tgt, "--tgt")
    if src == tgt:
        raise LskdError(f"--src and --tgt are both {src!r}; the two sides need different file suffixes")


def _write_splits(out: Path, sizes: Dict[str, int], seed: int, src: str, tgt: str, cfg: GrammarConfig):
    """Each split's two files; returns (files, vocabulary sets, train target counts, overlap with train)."""
    files: Dict[str, str] = {}
    vocab: Dict[str, set] = {"src": set(), "tgt": set()}
    train_tgt_counts: Counter = Counter()
    train_src_lines: set = set()
    overlap = {}
    for split, n in sizes.items():
        pairs = generate_pairs(n, seed, split, cfg)
        src_lines = [" ".join(s) for s, _ in pairs]
        tgt_lines = [" ".join(t) for _, t in pairs]
        for s, t in pairs:
            vocab["src"].update(s)
            vocab["tgt"].update(t)
        if split == "train":
            for _, t in pairs:
                train_tgt_counts.update(t)
            train_src_lines = set(src_lines)
        else:
            overlap[split] = sum(line in train_src_lines for line in src_lines)
        for lang, lines in ((src, src_lines), (tgt, tgt_lines)):
            path = out / f"{split}.{lang}"
            write_text_atomic(path, "\n".join(lines) + "\n")
            files[path.name] = str(path)
    return files, vocab, train_tgt_counts, overlap


def generate_corpus(
    out_dir,
    size: int,
    seed: int,
    valid_size: int = 1000,
    test_size: int = 1000,
    src: str = "en",
    tgt: str = "de",
    cfg: GrammarConfig = GrammarConfig(),
) -> dict:
    """Write train/valid/test.{src,tgt}, synonyms.json and README.md under ``out_dir``.

    Returns ``{"out_dir", "files": {name: path}, "counts": {split: n}, "synonyms", "readme",
    "suggested_triple", "vocab": {"src": n, "tgt": n}}``.
    """
    check_arguments(size, seed, valid_size, test_size, src, tgt)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LskdError(f"--out {str(out)!r} is an existing file; give a directory path")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LskdError(f"cannot create --out directory {str(out)!r}: {err.strerror}") from None

    sizes = {"train": size, "valid": valid_size, "test": test_size}
    files, vocab, train_tgt_counts, overlap = _write_splits(out, sizes, seed, src, tgt, cfg)

    groups = synonym_groups()
    triple = suggest_triple(groups, train_tgt_counts)
    synonyms = {
        "description": "Groups of near-synonym target tokens: the source word is translated to "
        "one of 'words' with 'probs', drawn independently at every occurrence. suggested_triple = "
        "two similar words (one group) and one frequent unrelated word, for the diffusion analysis.",
        "src": src,
        "tgt": tgt,
        "seed": seed,
        "groups": groups,
        "suggested_triple": triple,
        "suggested_triple_train_counts": {w: train_tgt_counts[w] for w in triple},
    }
    syn_path = out / "synonyms.json"
    write_text_atomic(syn_path, _json_one_group_a_line(synonyms))
    vocab_sizes = {k: len(v) for k, v in vocab.items()}
    readme_path = out / "README.md"
    write_text_atomic(readme_path, _readme(seed, sizes, src, tgt, vocab_sizes, overlap, triple, cfg))
    return {
        "out_dir": str(out),
        "files": files,
        "counts": sizes,
        "synonyms": str(syn_path),
        "readme": str(readme_path),
        "suggested_triple": triple,
        "vocab": vocab_sizes,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_output_option(parser, "train/valid/test.{src,tgt}, synonyms.json, README.md")
    parser.add_argument(
        "--size", type=positive_int, default=20000, help="training sentences (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed (default %(default)s); same seed, same bytes"
    )
    parser.add_argument(
        "--valid", type=positive_int, default=1000, help="validation sentences (default %(default)s)"
    )
    parser.add_argument(
        "--test", type=positive_int, default=1000, help="test sentences (default %(default)s)"
    )
    parser.add_argument("--src", default="en", help="source file suffix (default %(default)s)")
    parser.add_argument("--tgt", default="de", help="target file suffix (default %(default)s)")
    add_overwrite_option(parser)


def main(args: argparse.Namespace) -> int:
    out = require_output(args)
    check_arguments(args.size, args.seed, args.valid, args.test, args.src, args.tgt)
    owner = {
        "command": "synth-mt",
        **{k: getattr(args, k) for k in ("size", "seed", "valid", "test", "src", "tgt")},
    }
    claim_output(out, owner, args.overwrite, "--output")
    result = generate_corpus(
        out, args.size, args.seed, valid_size=args.valid, test_size=args.test, src=args.src, tgt=args.tgt
    )
    counts = ", ".join(f"{k} {v}" for k, v in result["counts"].items())
    print(
        f"wrote {result['out_dir']}: {counts} sentences; vocabulary {args.src} "
        f"{result['vocab']['src']}, {args.tgt} {result['vocab']['tgt']}; "
        f"suggested triple {' '.join(result['suggested_triple'])}"
    )
    return 0
