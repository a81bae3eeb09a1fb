import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared real data (read only; absent on a newcomer's clone): LSKD_SHARED_DATA, default ../shared/data.
# Every test that reads it carries the marker ``shared_data`` (added below to every test using the
# ``shared_data`` or ``shared_data_root`` fixture) and passes with and without it; .ci/run reruns
# ``-m shared_data`` with LSKD_SHARED_DATA naming an empty folder.
SHARED_DATA = Path(os.environ.get("LSKD_SHARED_DATA") or REPO / ".." / "shared" / "data").resolve()
SHARED_FIXTURES = ("shared_data", "shared_data_root")
VENV_BIN = Path(sys.executable).parent


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests marked slow (real data)")


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SHARED_FIXTURES):
            item.add_marker(pytest.mark.shared_data)
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: opt in with --run-slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data_root() -> Path:
    """$LSKD_SHARED_DATA (default ../shared/data), present or not: for tests that fall back to data
    of their own where a file is absent."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """$LSKD_SHARED_DATA (default ../shared/data), or a clean skip where it is absent (users' machines)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA} (set LSKD_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cli_env():
    """Environment for subprocess runs of fairseq-* and lskd from this venv."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def tiny_mt_data(tmp_path_factory, cli_env):
    """A synthetic en->de corpus and its joined-dictionary data-bin (real fairseq-preprocess).

    Returns a ``fairseq_fixtures.TinyMT`` with ``text_dir``, ``data_bin``, ``src``, ``tgt``.
    """
    import fairseq_fixtures as ff

    root = tmp_path_factory.mktemp("tiny_mt")
    text_dir = ff.write_parallel_text(root / "text")
    data_bin = ff.preprocess(text_dir, root / "data-bin", cli_env)
    return ff.TinyMT(text_dir=text_dir, data_bin=data_bin, src="en", tgt="de")


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tiny_mt_data, cli_env):
    """Path of a tiny transformer teacher (fairseq's label_smoothed_cross_entropy, eps 0.1,
    ~40 updates, CPU)."""
    import fairseq_fixtures as ff

    return ff.train_teacher(tiny_mt_data.data_bin, tmp_path_factory.mktemp("tiny_teacher"), cli_env)


@pytest.fixture(scope="session")
def tiny_teacher_150(tmp_path_factory, tiny_mt_data, cli_env):
    """tiny_teacher's recipe with 150 updates instead of 40: translations that differ from sentence
    to sentence and score above 0 BLEU (order and metric checks need them)."""
    import fairseq_fixtures as ff

    return ff.train_teacher(
        tiny_mt_data.data_bin, tmp_path_factory.mktemp("tiny_teacher_150"), cli_env, max_update=150
    )
