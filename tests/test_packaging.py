"""geochat installs inside its own namespace: no bare ``app``, ``training`` or ``data_builders``."""

import ast
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Top-level folders of the checkout and the package each installs as.
FOLDERS = {
    "geochat": "geochat",
    "app": "geochat.app",
    "training": "geochat.training",
    "data_builders": "geochat.data_builders",
}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed_under_the_geochat_namespace():
    on_disk = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((package, *parts)))
    config = _setuptools()
    assert set(config["packages"]) == on_disk
    assert config["package-dir"] == {p: f for f, p in FOLDERS.items() if f != p}


def test_the_library_imports_none_of_the_packages_built_on_it():
    # DESIGN: app, training and data_builders import geochat; geochat imports none of them.
    above = tuple(p for f, p in FOLDERS.items() if f != "geochat")
    found = []
    for source in (ROOT / "geochat").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{source.relative_to(ROOT)}: {n}" for n in names if n.startswith(above)]
    assert found == []


def test_a_project_with_its_own_app_and_training_packages_keeps_them(tmp_path):
    # Another project's `app` and `training` on the path, and geochat installed beside them.
    for name in ("app", "training", "data_builders"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("OWNER = 'theirs'\n")
    check = (
        "import app, training, data_builders, geochat.app, geochat.training, "
        "geochat.data_builders\n"
        "assert app.OWNER == training.OWNER == data_builders.OWNER == 'theirs'\n"
        "print(geochat.app.__file__, geochat.training.__file__)\n"
    )
    # cwd and path point at the other project only: geochat comes from its installation.
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ours, _ = result.stdout.split()
    assert Path(ours).resolve() == ROOT / "app" / "__init__.py"


def test_the_wheel_holds_only_the_geochat_package(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("geochat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith((".dist-info", ".data"))} == {"geochat"}
    for expected in (
        "geochat/app/examples/harbour.png",
        "geochat/training/recipes/nano-synthetic.yaml",
        "geochat/data_builders/tags.yaml",
        "geochat/assets/geochat-nano/config.json",
    ):
        assert expected in names
