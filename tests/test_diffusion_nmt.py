"""NMT side of the diffusion analysis: decoder-state capture at gold tokens, labels, `lskd diffusion nmt`."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lskd_plugins.cli import main as lskd_main
from lskd_plugins.diffusion.capture import ForwardHookManager, capture_fairseq, fairseq_templates
from lskd_plugins.diffusion.nmt_source import nmt_batches, nmt_label
from lskd_plugins.diffusion.projection import augment
from lskd_plugins.errors import LskdError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher(tiny_mt_data, tiny_teacher):
    from lskd_plugins.fairseq_io import load_ensemble

    models, cfg, task = load_ensemble([str(tiny_teacher)], arg_overrides={"data": str(tiny_mt_data.data_bin)})
    task.load_dataset("valid")
    return models[0].eval(), task


def test_capture_returns_one_feature_per_gold_occurrence(teacher):
    model, task = teacher
    d = task.target_dictionary
    ids = [d.index("mann"), d.index("herr"), d.index("apfel")]
    assert all(i != d.unk() for i in ids)
    batches = nmt_batches(task.dataset("valid"), 25, 7)
    # pad is never captured, even when asked for
    cap = capture_fairseq(model, batches, ids + [d.pad()], prob_ids=ids, pad=d.pad(), progress=False)
    gold = torch.cat([b["target"][torch.isin(b["target"], torch.tensor(ids))] for b in batches])
    assert len(gold) > 10
    assert np.array_equal(cap.labels, gold.numpy())
    assert cap.features.shape == (len(gold), model.decoder.output_projection.weight.shape[1])
    # cross-check against a full forward with a hook on the output projection's input
    feats, probs = [], []
    with ForwardHookManager(model) as hooks, torch.no_grad():
        hooks.add_hook("decoder.output_projection")
        for b in batches:
            logits, _ = model(**b["net_input"])
            h = hooks.pop_io_dict()["decoder.output_projection"]["input"][0]
            mask = torch.isin(b["target"], torch.tensor(ids))
            feats.append(h[mask])
            probs.append(torch.softmax(logits[mask].float(), -1)[:, ids])
    np.testing.assert_allclose(cap.features, torch.cat(feats).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cap.probs, torch.cat(probs).double().numpy(), rtol=1e-4, atol=1e-7)
    t = fairseq_templates(model, ids)
    np.testing.assert_allclose(t[:, :-1], model.decoder.output_projection.weight.detach()[ids].numpy())
    assert np.all(t[:, -1] == 0)  # fairseq's output projection has no bias
    # the three logits are features . templates
    logit_ids = augment(cap.features) @ t.T
    full = np.log(
        cap.probs
    )  # log p = logit - logsumexp; differences between the 3 columns are logit differences
    np.testing.assert_allclose(
        full[:, 0] - full[:, 1], logit_ids[:, 0] - logit_ids[:, 1], rtol=1e-3, atol=1e-3
    )


def test_nmt_label_from_checkpoint_config():
    teacher = SimpleNamespace(
        criterion=SimpleNamespace(_name="label_smoothed_cross_entropy", label_smoothing=0.1)
    )
    assert nmt_label(teacher, "t.pt") == "teacher alpha=0.1"
    student = SimpleNamespace(
        criterion=SimpleNamespace(_name="lskd_kd", label_smoothing=0.1, kd_alpha=0.9, kd_temperature=3.0),
        task=SimpleNamespace(teacher_path="runs/teacher_ls0.1/checkpoint_best.pt"),
    )
    # the teacher's file is not there: its folder names it; where it is, its own smoothing does
    assert nmt_label(student, "s.pt") == "KD student T=3 kd_alpha=0.9 eps=0.1 from teacher_ls0.1"
    assert nmt_label(student, "s.pt", 0.1) == "KD student T=3 kd_alpha=0.9 eps=0.1 from teacher alpha=0.1"
    # recipes/demo.sh's student without KD: lskd_kd --kd-alpha 0 and no teacher (issue 11)
    no_kd = SimpleNamespace(criterion=SimpleNamespace(_name="lskd_kd", label_smoothing=0.1, kd_alpha=0.0))
    assert nmt_label(no_kd, "p.pt") == "no-KD student eps=0.1"
    no_teacher = SimpleNamespace(
        criterion=SimpleNamespace(_name="lskd_kd", label_smoothing=0.0, kd_alpha=0.9)
    )
    assert nmt_label(no_teacher, "p.pt") == "no-KD student"
    assert nmt_label(SimpleNamespace(), "dir/model.pt") == "model"


@pytest.fixture(scope="module")
def two_checkpoints(tiny_teacher, tmp_path_factory):
    """The tiny LS teacher and a copy relabelled alpha=0 with perturbed weights."""
    root = tmp_path_factory.mktemp("diffusion_nmt")
    state = torch.load(tiny_teacher, map_location="cpu", weights_only=False)
    state["cfg"]["criterion"]["label_smoothing"] = 0.0
    gen = torch.Generator().manual_seed(0)
    state["model"] = {
        k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in state["model"].items()
    }
    other = root / "noLS.pt"
    torch.save(state, other)
    return [tiny_teacher, other]


def test_cli_nmt_writes_all_files(tiny_mt_data, two_checkpoints, tmp_path):
    out = tmp_path / "out"
    rc = lskd_main(
        [
            "diffusion",
            "nmt",
            "--checkpoints",
            *map(str, two_checkpoints),
            "--data",
            str(tiny_mt_data.data_bin),
            "--out",  # the old name of --output, kept as a hidden alias
            str(out),
            "--tokens",
            "mann,herr,apfel",
            "--max-sentences",
            "30",
            "--per-token",
            "8",
            "--device",
            "cpu",
            "--quiet",  # the old name of --no-progress
        ]
    )
    assert rc == 0
    doc = json.loads((out / "diffusion.json").read_text())
    assert doc["modality"] == "nmt"
    assert [r["label"] for r in doc["records"]] == ["teacher alpha=0.1", "teacher alpha=0"]
    rec = doc["records"][0]
    assert rec["classes"]["a"] == "mann" and rec["classes"]["c"] == "apfel"
    for split in ("train", "valid"):
        assert all(2 <= n <= 8 for n in rec[split]["n"].values()), rec[split]["n"]
        assert isinstance(rec[split]["eta"], float) and isinstance(rec[split]["p_b_given_a"], float)
    assert doc["records"][0]["valid"]["eta"] != doc["records"][1]["valid"]["eta"]
    assert "| teacher alpha=0.1 | valid |" in (out / "diffusion.md").read_text()
    from PIL import Image

    with Image.open(out / "projection.png") as img:
        arr = np.asarray(img.convert("RGB"))
    assert arr.std() > 10 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 50


def test_automatic_tokens_and_unknown_token_error(tiny_mt_data, two_checkpoints, tmp_path, capsys):
    from lskd_plugins.diffusion import analyse_nmt_checkpoints

    records, _ = analyse_nmt_checkpoints(
        [two_checkpoints[0]],
        tiny_mt_data.data_bin,
        max_sentences=40,
        per_token=20,
        device="cpu",
        progress=False,
        log=lambda m: None,
    )
    sel = records[0]["selection"]
    assert sel["method"] == "auto" and len(set(sel["names"])) == 3 and "most confused" in sel["reason"]
    with pytest.raises(LskdError) as err:
        analyse_nmt_checkpoints(
            [two_checkpoints[0]],
            tiny_mt_data.data_bin,
            tokens="mann,zebra,apfel",
            device="cpu",
            progress=False,
            log=lambda m: None,
        )
    assert err.value.message.startswith("unknown target token zebra; known: ")


def test_automatic_tokens_occur_often_enough_in_every_split():
    """A frequent validation word that is rare in the train sentences read is never a candidate
    (a run once chose 'Shirt', seen once in 500 train sentences, and failed after training)."""
    from fairseq.data import Dictionary

    from lskd_plugins.diffusion.nmt_source import MIN_CANDIDATE_COUNT, NmtSource

    d = Dictionary()
    ids = {w: d.add_symbol(w) for w in ("▁ein", "▁eine", "▁Mann", "▁Shirt", "▁Hund")}

    def batch(counts):
        tokens = [ids[w] for w, n in counts.items() for _ in range(n)]
        return {"target": torch.tensor([tokens])}

    src = NmtSource.__new__(NmtSource)
    src.pad, src.candidates, src.max_sentences = d.pad(), 50, 500
    src.batches = {
        "valid": [batch({"▁Shirt": 60, "▁ein": 50, "▁eine": 40, "▁Mann": 30, "▁Hund": 20})],
        "train": [batch({"▁Shirt": 1, "▁ein": 50, "▁eine": 40, "▁Mann": MIN_CANDIDATE_COUNT, "▁Hund": 3})],
    }
    model = SimpleNamespace(task=SimpleNamespace(target_dictionary=d))
    assert [d[t] for t in src.candidate_tokens(model)] == ["▁ein", "▁eine", "▁Mann"]
    src.batches["train"] = [batch({"▁ein": 50, "▁eine": 40})]
    with pytest.raises(LskdError, match="fewer than three word tokens occur 10\\+ times"):
        src.candidate_tokens(model)


def test_sentencepiece_continuation_pieces_are_not_words():
    """In a sentencepiece vocabulary a piece without the leading '▁' continues a word ('Shirt' of
    'T-Shirt'): not a whole word. Without sentencepiece pieces (word or BPE vocabularies) it is."""
    from lskd_plugins.diffusion.nmt_source import is_sentencepiece, is_word

    assert is_sentencepiece(["▁ein", "Shirt"]) and not is_sentencepiece(["ein", "Hund@@", "Shirt"])
    assert is_word("▁Mann", True) and not is_word("Shirt", True)
    assert is_word("Shirt", False) and not is_word("Hund@@", False) and not is_word("<unk>", False)
    assert not is_word("▁2", True) and not is_word("▁", True)
