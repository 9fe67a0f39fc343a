"""Which packages make up the portal, and where their folders are.

Everything else is in pyproject.toml. The top-level ``templates/`` and
``migrations/`` folders ship inside the package as ``portal.templates`` and
``portal.migrations``, in an editable install and in a plain ``pip install .``
alike, so the portal finds them through ``importlib.resources`` wherever it is
installed. Every folder is found, not listed: a new context needs no change here.
"""

from setuptools import find_namespace_packages, setup

NOT_CODE = ["__pycache__", "*.__pycache__"]


def _packages(where: str, prefix: str) -> list[str]:
    return [
        prefix,
        *(f"{prefix}.{name}" for name in find_namespace_packages(where, exclude=NOT_CODE)),
    ]


setup(
    package_dir={"": "src", "portal.templates": "templates", "portal.migrations": "migrations"},
    packages=[
        *_packages("src/portal", "portal"),
        *_packages("templates", "portal.templates"),
        *_packages("migrations", "portal.migrations"),
    ],
)
