"""benchmarks/cache_bleu.py: cached students are paired with their online twins, by seed, and only those."""

import hashlib
import importlib.util
import json
import math

import pytest
from scipy.stats import t as student_t


@pytest.fixture(scope="module")
def cache_bleu(repo_root):
    path = repo_root / "benchmarks" / "cache_bleu.py"
    spec = importlib.util.spec_from_file_location("bench_cache_bleu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_run(study, name, seed, alpha, temp, cached, bleu, max_update=800, finished=True):
    spec = {
        "modality": "translation",
        "role": "student",
        "kind": "word",
        "kd_method": "kd",
        "teacher_smoothing": alpha,
        "temperature": temp,
        "seed_index": seed,
        "seed": seed * 2**20,  # the student stream of the index (lskd_plugins/study/seeds.py)
        "data": "d" * 8,
        "options": {"max-update": max_update},
        "teacher_cache": cached,
        "deps": {f"translation/teacher_eps{alpha:g}_s0": "k" * 16},
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    folder = study / "runs" / name
    folder = folder.with_name(f"{folder.name}-{key[:10]}")
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"name": name, "key": key, "spec": spec}))
    if finished:
        (folder / "result.json").write_text(json.dumps({"key": key, "metrics": {"bleu": bleu}}))


def test_pairs_by_seed_and_pools_every_pair(cache_bleu, tmp_path, capsys):
    online, cached = tmp_path / "online", tmp_path / "cached"
    scores = {0: (30.0, 30.4), 1: (31.0, 30.8), 2: (29.5, 30.1)}
    for s, (on, ca) in scores.items():
        write_run(online, f"translation/word_eps0.1_T2_s{s}", s, 0.1, 2.0, False, on)
        write_run(cached, f"translation/word_eps0.1_T2_s{s}", s, 0.1, 2.0, "features", ca)
        write_run(online, f"translation/word_eps0_T2_s{s}", s, 0.0, 2.0, False, on - 1)
        write_run(cached, f"translation/word_eps0_T2_s{s}", s, 0.0, 2.0, "features", on - 1 + 0.1 * s)
        write_run(cached, f"translation/word_eps0_T2_s{s}", s, 0.0, 2.0, True, on - 9)  # top-k students
    # not twins: another budget, an unfinished run, a temperature with no cached student
    write_run(cached, "translation/word_eps0.1_T3_s0", 0, 0.1, 3.0, "features", 99.0, max_update=50)
    write_run(online, "translation/word_eps0.1_T3_s1", 1, 0.1, 3.0, False, 1.0)
    write_run(cached, "translation/word_eps0.1_T1_s0", 0, 0.1, 1.0, "features", 5.0, finished=False)
    assert cache_bleu.main([str(online), str(cached), "--json", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert [(c["alpha"], c["T"]) for c in result["cells"]] == [(0.0, 2.0), (0.1, 2.0)]
    ls = result["cells"][1]
    diffs = [ca - on for on, ca in scores.values()]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    assert ls["mean"] == pytest.approx(mean)
    assert ls["hi"] - ls["mean"] == pytest.approx(student_t.ppf(0.975, 2) * sd / math.sqrt(3))
    pooled = result["pooled"]
    assert pooled["n"] == 6
    assert pooled["mean"] == pytest.approx((sum(diffs) + 0.0 + 0.1 + 0.2) / 6)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"bleu_cached_minus_online={pooled['mean']:.3f} ci95=[")
    assert last.endswith("pairs=6 inside_1bleu=True")
    assert cache_bleu.main([str(online), str(cached), "--store", "topk"]) == 0  # the top-k students alone
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("bleu_cached_minus_online=-8.000 ci95=[") and "pairs=3 " in last


def test_no_twins_is_a_clear_exit(cache_bleu, tmp_path, capsys):
    write_run(tmp_path / "s", "translation/word_eps0_T2_s0", 0, 0.0, 2.0, False, 30.0)
    assert cache_bleu.main([str(tmp_path / "s")]) == 2
    assert "no features-cached student has an online twin" in capsys.readouterr().out
