"""The build: the package from src/, with the default config and the committed models as its data.

config/cfg.ini and models/<name>/ stay where the checkout keeps them; the wheel carries them as
jueju/share/config/ and jueju/share/models/<name>/, where jueju.home finds them once installed.
Only a model's own files go: never its checkpoints/ or train_state.json (see .gitignore).
Everything else about the package is in pyproject.toml.
"""

from setuptools import find_packages, setup

COMMITTED_MODELS = ("wuyan", "qiyan", "wuyan-backward", "qiyan-backward")  # the model folders git tracks
MODEL_FILES = ("*.keras", "*.json", "*.npz", "*.png")  # what a model folder holds (jueju train, fit_reader/critic)

setup(
    packages=[*find_packages("src"), "jueju.share.config", "jueju.share.models"],
    package_dir={"": "src", "jueju.share.config": "config", "jueju.share.models": "models"},
    package_data={
        "jueju.serve": ["web/*.html"],  # the page jueju serve answers at /
        "jueju.share.config": ["cfg.ini"],
        "jueju.share.models": [f"{name}/{files}" for name in COMMITTED_MODELS for files in MODEL_FILES],
    },
    exclude_package_data={"jueju.share.models": ["*/train_state.json"]},  # training's own state, not the model's
)
