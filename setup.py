"""lskd's package. fairseq is deliberately NOT in install_requires: upstream fairseq 0.12.2 does not
import on Python 3.11, so `make install` builds fairseq-fixed against the installed torch; install
fairseq (and timm) first, then `pip install -e .` (README, "Install into your own environment").
`lskd` says in one line when fairseq is missing. tests/test_packaging.py checks that every
third-party module the package imports is listed here."""

import re
from pathlib import Path

from setuptools import find_packages, setup


def read_version() -> str:
    """The one source of the version: lskd_plugins.__version__ (read without importing the package)."""
    text = (Path(__file__).parent / "lskd_plugins" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


# import name -> distribution, for every third-party module lskd_plugins imports (fairseq excepted)
REQUIREMENTS = {
    "huggingface_hub": "huggingface_hub",  # timm's own dependency; lskd looks up its cache offline
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "omegaconf": "omegaconf",
    "PIL": "pillow",
    "sacrebleu": "sacrebleu",
    "safetensors": "safetensors",
    "scipy": "scipy",  # the study's t quantiles (also scikit-learn's dependency)
    "sacremoses": "sacremoses",  # optional in the code (13a fallback), required for Tan et al.'s BLEU
    "sentencepiece": "sentencepiece",
    "sklearn": "scikit-learn",
    "submitit": "submitit",
    "tensorboard": "tensorboard",
    "timm": "timm",
    "torch": "torch",
    "torchvision": "torchvision",
    "tqdm": "tqdm",
    "yaml": "pyyaml",
}

if __name__ == "__main__":
    setup(
        name="lskd",
        version=read_version(),
        description="Label smoothing and knowledge distillation compatibility: fairseq plugins, a timm "
        "image recipe and systematic-diffusion analysis",
        packages=find_packages(include=["lskd_plugins", "lskd_plugins.*"]),
        python_requires=">=3.10",
        install_requires=sorted(set(REQUIREMENTS.values())),
        entry_points={"console_scripts": ["lskd = lskd_plugins.cli:main"]},
    )
