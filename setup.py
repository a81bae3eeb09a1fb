from setuptools import find_packages, setup

setup(
    name="lskd",
    version="0.1.0",
    description="Label smoothing and knowledge distillation compatibility: fairseq plugins, a timm "
    "image recipe and systematic-diffusion analysis",
    packages=find_packages(include=["lskd_plugins", "lskd_plugins.*"]),
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "timm", "sacrebleu", "matplotlib", "tqdm"],
    entry_points={"console_scripts": ["lskd = lskd_plugins.cli:main"]},
)
