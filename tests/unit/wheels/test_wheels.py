"""Wheels datasets: resolution for a target image, verification, cache, install cell.

Everything runs offline: the packages are tiny wheels and sdists made here, served from a local
wheelhouse (``--find-links``) or a local ``file://`` simple index; pip's config and env are
isolated so neither PyPI nor a machine-wide find-links is ever consulted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import venv
from pathlib import Path

import pytest

from kagflow.errors import NamingError, WheelsError
from kagflow.rules.image import TargetImage, current_image, load_image
from kagflow.wheels import MANIFEST_NAME, build_wheels, check_dataset, manifest_digest, piprun, size_warnings
from kagflow.wheels.offline_install import WheelsInstallError, find_wheels_datasets, install_from_wheels_dataset
from kagflow.wheels.verify import verify_offline
from kagflow.wheels.wheelfile import sha256_file, write_image_standins, write_wheel

OWNER = "someone"
TITLE = "pip-wheels-test"
KAGGLE_PLATFORMS = load_image("kaggle-gpu").platforms


# --------------------------------------------------------------------------- isolation

@pytest.fixture(autouse=True)
def isolated_pip(monkeypatch, tmp_path):
    """No pip config, no machine-wide find-links/constraints, and an index URL that cannot reach PyPI."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "no-pypi-in-tests").as_uri())
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")


# --------------------------------------------------------------------------- package factory

_BACKEND = '''
import base64, hashlib, os, zipfile
NAME, VERSION, TAG = {name!r}, {version!r}, {tag!r}

def get_requires_for_build_wheel(config_settings=None):
    return []

def get_requires_for_build_sdist(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = "%s-%s.dist-info" % (NAME, VERSION)
    files = {{NAME + "/__init__.py": open(os.path.join(NAME, "__init__.py"), "rb").read(),
             dist + "/METADATA": ("Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)).encode(),
             dist + "/WHEEL": ("Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: %s\\n"
                               % TAG).encode()}}
    record = []
    for n, d in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (n, h, len(d)))
    record.append(dist + "/RECORD,,")
    files[dist + "/RECORD"] = ("\\n".join(record) + "\\n").encode()
    fname = "%s-%s-%s.whl" % (NAME, VERSION, TAG)
    with zipfile.ZipFile(os.path.join(wheel_directory, fname), "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return fname
'''


def write_sdist(directory: Path, name: str, version: str, *, tag: str = "py3-none-any") -> Path:
    """An sdist with an in-tree PEP 517 backend (no build requirements: builds offline)."""
    root = f"{name}-{version}"
    members = {
        f"{root}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{root}/pyproject.toml": textwrap.dedent("""\
            [build-system]
            requires = []
            build-backend = "backend"
            backend-path = ["."]
        """),
        f"{root}/backend.py": _BACKEND.format(name=name, version=version, tag=tag),
        f"{root}/{name}/__init__.py": f"VERSION = {version!r}\n",
    }
    path = directory / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def module(name: str, version: str) -> dict:
    return {f"{name}/__init__.py": f"VERSION = {version!r}\n"}


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory) -> Path:
    """alpha→beta>=1, delta→beta>=2, beta 1.0/2.0, gamma (sdist only), onlywin (win_amd64 only),
    cext (cp312 manylinux_2_28 1.0, manylinux_2_36 2.0), native (sdist that builds a platform wheel),
    mu → beta>=2 only on Python >= 3.12."""
    d = tmp_path_factory.mktemp("wheelhouse")
    write_wheel(d, "alpha", "1.0", requires=["beta>=1"], files=module("alpha", "1.0"))
    write_wheel(d, "delta", "1.0", requires=["beta>=2"], files=module("delta", "1.0"))
    write_wheel(d, "beta", "1.0", files=module("beta", "1.0"))
    write_wheel(d, "beta", "2.0", files=module("beta", "2.0"))
    write_sdist(d, "gamma", "1.0")
    write_wheel(d, "onlywin", "1.0", tag="py3-none-win_amd64", files=module("onlywin", "1.0"))
    write_wheel(d, "cext", "1.0", tag="cp312-cp312-manylinux_2_28_x86_64", files=module("cext", "1.0"))
    write_wheel(d, "cext", "2.0", tag="cp312-cp312-manylinux_2_36_x86_64", files=module("cext", "2.0"))
    write_sdist(d, "native", "1.0", tag="cp311-cp311-linux_x86_64")
    write_wheel(d, "mu", "1.0", requires=['beta>=2; python_version >= "3.12"'], files=module("mu", "1.0"))
    return d


def simple_index(root: Path, wheelhouse: Path) -> str:
    """A PEP 503 simple index of the wheelhouse under ``root``; returns its file:// URL."""
    files = root / "files"
    shutil.copytree(wheelhouse, files)
    by_project: dict[str, list[str]] = {}
    for f in sorted(files.iterdir()):
        project = f.name.split("-", 1)[0].replace("_", "-").lower()
        by_project.setdefault(project, []).append(f.name)
    for project, names in by_project.items():
        page = root / "simple" / project
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{n}">{n}</a>\n' for n in names)
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return (root / "simple").as_uri()


def py312_image(**installed: str) -> TargetImage:
    """A Kaggle-like target unlike this machine: CPython 3.12 on manylinux up to glibc 2.35."""
    return TargetImage(name="kaggle-like-312", python_version="3.12", abis=("cp312", "abi3", "none"),
                       platforms=KAGGLE_PLATFORMS, installed=installed)


@pytest.fixture
def pip_calls(monkeypatch) -> list[list[str]]:
    """Every pip command kagflow runs, in order (still run for real)."""
    calls: list[list[str]] = []
    real = piprun.run_pip

    def spy(args, **kw):
        calls.append([str(a) for a in args])
        return real(args, **kw)

    monkeypatch.setattr(piprun, "run_pip", spy)
    return calls


def build(tmp_path, requirements, image, wheelhouse, **kw):
    kw.setdefault("find_links", [wheelhouse])
    kw.setdefault("no_index", True)
    return build_wheels(requirements, image, tmp_path / "wheels" / TITLE, owner=OWNER, title=TITLE,
                        license_name="other", cache_dir=tmp_path / "cache", **kw)


def manifest(result) -> dict:
    return json.loads(result.manifest_path.read_text())


# --------------------------------------------------------------------------- building for a target

def test_image_packages_are_left_out_and_the_rest_is_shipped(tmp_path, wheelhouse):
    result = build(tmp_path, ["alpha", "gamma", "cext"], py312_image(beta="1.0"), wheelhouse)

    shipped = {w.name: w for w in result.wheels}
    assert set(shipped) == {"alpha", "gamma", "cext"}                 # beta: the image has 1.0 >= 1
    assert result.from_image == ("beta==1.0",)
    assert shipped["cext"].filename == "cext-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"   # 2.0 needs glibc 2.36
    assert shipped["gamma"].filename == "gamma-1.0-py3-none-any.whl"                       # built from its sdist
    assert shipped["alpha"].why == "required" and shipped["alpha"].import_names == ("alpha",)

    out = tmp_path / "wheels" / TITLE
    assert sorted(p.name for p in out.glob("*.whl")) == sorted(w.filename for w in result.wheels)
    data = manifest(result)
    assert data["complete"] is True and data["requirements"] == ["alpha", "gamma", "cext"]
    assert data["target_image"]["name"] == "kaggle-like-312"
    for entry in data["packages"]:
        wheel = out / entry["filename"]
        assert entry["sha256"] == sha256_file(wheel) and entry["size"] == wheel.stat().st_size
    assert result.total_size == sum(e["size"] for e in data["packages"]) == data["total_size"]
    meta = json.loads((out / "dataset-metadata.json").read_text())
    assert meta["id"] == f"{OWNER}/{TITLE}" and meta["title"] == TITLE and meta["isPrivate"] is True
    assert check_dataset(out) == []
    assert any(line.startswith(f"{OWNER}/{TITLE}: 3 wheels") for line in result.summary_lines())


def test_a_dependency_the_image_has_at_a_too_old_version_is_shipped_with_the_reason(tmp_path, wheelhouse):
    result = build(tmp_path, ["delta"], py312_image(beta="1.0"), wheelhouse)

    shipped = {w.name: w for w in result.wheels}
    assert set(shipped) == {"delta", "beta"}
    assert shipped["beta"].version == "2.0" and shipped["beta"].replaces == "1.0"
    assert shipped["beta"].why == "image has beta==1.0, need beta>=2 (delta)"
    assert shipped["delta"].why == "required"


def test_a_dependency_the_image_lacks_is_shipped_as_a_dependency(tmp_path, wheelhouse):
    result = build(tmp_path, ["alpha"], py312_image(), wheelhouse)
    shipped = {w.name: w for w in result.wheels}
    assert shipped["beta"].version == "2.0" and shipped["beta"].why == "dependency of alpha"


def test_a_package_with_no_wheel_for_the_target_fails_naming_it_and_the_tags(tmp_path, wheelhouse):
    with pytest.raises(WheelsError) as err:
        build(tmp_path, ["alpha", "onlywin"], py312_image(beta="1.0"), wheelhouse)
    e = err.value
    assert "onlywin" in e.message and "kaggle-like-312" in e.message
    assert "manylinux_2_35_x86_64" in e.context and "cp312" in e.context
    assert "No matching distribution found for onlywin" in e.context        # pip's own reason
    assert not (tmp_path / "wheels" / TITLE / MANIFEST_NAME).exists()


def test_an_sdist_that_builds_a_platform_wheel_is_refused(tmp_path, wheelhouse):
    with pytest.raises(WheelsError) as err:
        build(tmp_path, ["native"], py312_image(), wheelhouse)
    assert "native" in err.value.message and "linux_x86_64" in err.value.message
    assert "py3-none-any" in err.value.context


def test_an_invalid_requirement_or_title_fails_before_pip_runs(tmp_path, wheelhouse, pip_calls):
    with pytest.raises(WheelsError, match="invalid requirement"):
        build(tmp_path, ["alpha>>1"], py312_image(), wheelhouse)
    with pytest.raises(NamingError):
        build_wheels(["alpha"], py312_image(), tmp_path / "x", owner=OWNER, title="tiny", license_name="other",
                     cache_dir=tmp_path / "c",
                     find_links=[wheelhouse], no_index=True)
    assert pip_calls == []


# --------------------------------------------------------------------------- cache: a rebuild needs no index

def test_rebuild_with_unchanged_requirements_downloads_nothing(tmp_path, wheelhouse, pip_calls):
    index = simple_index(tmp_path / "index", wheelhouse)
    first = build(tmp_path, ["alpha", "gamma"], py312_image(), wheelhouse, index_url=index, find_links=[],
                  no_index=False)
    assert not first.cached and any(c[0] == "install" and "--report" in c and "--no-index" not in c
                                    for c in pip_calls)
    shutil.rmtree(tmp_path / "index")                          # the index is gone: any access would fail
    pip_calls.clear()

    again = build(tmp_path, ["alpha", "gamma"], py312_image(), wheelhouse, index_url=index, find_links=[],
                  no_index=False)

    assert again.cached and again.digest == first.digest and again.wheels == first.wheels
    assert [c[0] for c in pip_calls] == ["install"]            # only the offline verification ran
    assert "--no-index" in pip_calls[0] and "--dry-run" in pip_calls[0]
    assert manifest_digest(tmp_path / "wheels" / TITLE) == first.digest


def test_the_digest_follows_the_wheels_and_requirements(tmp_path, wheelhouse):
    one = build(tmp_path, ["alpha"], py312_image(beta="1.0"), wheelhouse)
    two = build(tmp_path, ["alpha", "gamma"], py312_image(beta="1.0"), wheelhouse)
    assert one.digest != two.digest
    assert (tmp_path / "wheels" / TITLE / "gamma-1.0-py3-none-any.whl").exists()
    back = build(tmp_path, ["alpha"], py312_image(beta="1.0"), wheelhouse)
    assert back.digest == one.digest
    assert sorted(p.name for p in (tmp_path / "wheels" / TITLE).glob("*.whl")) == ["alpha-1.0-py3-none-any.whl"]


# --------------------------------------------------------------------------- offline verification

def test_verification_fails_with_pips_reason_when_a_dependency_is_missing(tmp_path, wheelhouse):
    dataset = tmp_path / "ds"
    dataset.mkdir()
    shutil.copy(wheelhouse / "delta-1.0-py3-none-any.whl", dataset)
    standins = write_image_standins(tmp_path / "image", {"beta": "1.0"})
    with pytest.raises(WheelsError) as err:
        verify_offline(dataset, ["delta"], py312_image(beta="1.0"), {"delta": "1.0"}, standins, tmp_path / "v")
    assert "would not install offline" in err.value.message
    assert "beta" in err.value.context


def test_size_warnings_above_kaggle_limits():
    assert size_warnings(10**6) == []
    assert "quota" in size_warnings(101 * 10**9)[0]


# --------------------------------------------------------------------------- installing the dataset

def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(path)
    return path / "bin" / "python"


def this_machine() -> TargetImage:
    return current_image("this-machine", installed={})


def test_the_dataset_installs_into_a_fresh_virtualenv_offline(tmp_path, wheelhouse):
    result = build(tmp_path, ["alpha", "gamma"], this_machine(), wheelhouse)
    assert {w.name for w in result.wheels} == {"alpha", "beta", "gamma"}
    python = fresh_venv(tmp_path / "venv")
    out = tmp_path / "wheels" / TITLE

    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
                    "--find-links", str(out), "alpha", "gamma"], check=True, capture_output=True)

    code = "import alpha, beta, gamma; print(alpha.VERSION, beta.VERSION, gamma.VERSION)"
    run = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True)
    assert run.stdout.split() == ["1.0", "2.0", "1.0"]


def test_install_cell_installs_from_a_fake_kaggle_input(tmp_path, wheelhouse, capsys):
    result = build(tmp_path, ["alpha", "gamma"], this_machine(), wheelhouse)
    mounted = tmp_path / "input" / "datasets" / OWNER / TITLE                 # newer mount layout
    shutil.copytree(result.out_dir, mounted)
    (tmp_path / "input" / "competitions" / "llm-classification-finetuning").mkdir(parents=True)
    python = fresh_venv(tmp_path / "venv")

    installed = install_from_wheels_dataset(str(tmp_path / "input"), required=("alpha", "gamma"),
                                            python=str(python))

    assert sorted(installed) == ["alpha==1.0", "beta==2.0", "gamma==1.0"]
    assert "installed 3 wheels" in capsys.readouterr().out
    run = subprocess.run([str(python), "-c", "import alpha, beta, gamma"], capture_output=True)
    assert run.returncode == 0


def test_install_cell_finds_the_classic_layout_too(tmp_path, wheelhouse):
    result = build(tmp_path, ["alpha"], this_machine(), wheelhouse)
    shutil.copytree(result.out_dir, tmp_path / "input" / TITLE)
    assert find_wheels_datasets(str(tmp_path / "input")) == [str(tmp_path / "input" / TITLE)]


def test_install_cell_without_a_dataset_prints_one_line(tmp_path, capsys):
    (tmp_path / "input" / "competitions").mkdir(parents=True)
    assert install_from_wheels_dataset(str(tmp_path / "input")) == []
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no wheels dataset" in out[0]


def test_install_cell_fails_loud_when_a_required_package_is_absent(tmp_path, wheelhouse):
    result = build(tmp_path, ["alpha"], this_machine(), wheelhouse)
    shutil.copytree(result.out_dir, tmp_path / "input" / TITLE)
    python = fresh_venv(tmp_path / "venv")
    with pytest.raises(WheelsInstallError) as err:
        install_from_wheels_dataset(str(tmp_path / "input"), required=("alpha", "peftless"), python=str(python))
    assert "peftless is not installed" in str(err.value) and "kagflow wheels build" in str(err.value)

    (tmp_path / "input" / TITLE / "beta-2.0-py3-none-any.whl").unlink()
    with pytest.raises(WheelsInstallError, match="beta: beta-2.0-py3-none-any.whl is missing"):
        install_from_wheels_dataset(str(tmp_path / "input"), python=str(python))


def test_install_cell_without_a_dataset_still_checks_required(tmp_path):
    with pytest.raises(WheelsInstallError, match="surely-not-installed-pkg is not installed"):
        install_from_wheels_dataset(str(tmp_path / "nothing"), required=("surely-not-installed-pkg",))


CHECK_SPY = """
import json, subprocess, sys
calls = []
real = subprocess.run
subprocess.run = lambda cmd, *a, **k: (calls.append(list(cmd)), real(cmd, *a, **k))[1]
if sys.argv[2] == "stale":  # an alpha imported before the install, from elsewhere
    sys.path.insert(0, sys.argv[3]); import alpha; sys.path.pop(0)
from kagflow.wheels.offline_install import install_from_wheels_dataset
install_from_wheels_dataset(sys.argv[1], required=("alpha",))
import alpha, beta
print(json.dumps({"checks": sum("-c" in c for c in calls), "pips": sum("pip" in c for c in calls),
                  "alpha": alpha.VERSION, "beta": beta.VERSION}))
"""


def test_install_cell_checks_in_the_kernel_itself_unless_a_package_was_imported_before(tmp_path, wheelhouse):
    # no second interpreter importing everything again (~12 s a kernel start with torch and peft), but a fresh
    # one when this process already holds a module the install may have replaced
    result = build(tmp_path, ["alpha"], this_machine(), wheelhouse)
    shutil.copytree(result.out_dir, tmp_path / "input" / TITLE)
    stale = tmp_path / "stale" / "alpha"
    stale.mkdir(parents=True)
    (stale / "__init__.py").write_text("VERSION = '0.9'\n")

    def run(mode: str, site: Path) -> dict:
        env = {**os.environ, "PIP_TARGET": str(site), "PIP_NO_INDEX": "1",
               "PYTHONPATH": os.pathsep.join([str(site), str(Path(__file__).resolve().parents[3])])}
        proc = subprocess.run([sys.executable, "-c", CHECK_SPY, str(tmp_path / "input"), mode, str(stale.parent)],
                              capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert run("fresh", tmp_path / "site1") == {"checks": 0, "pips": 1, "alpha": "1.0", "beta": "2.0"}
    assert run("stale", tmp_path / "site2") == {"checks": 1, "pips": 1, "alpha": "0.9", "beta": "2.0"}


def test_the_in_process_check_still_catches_wrong_versions_and_failed_imports():
    from kagflow.wheels.offline_install import _check

    problems = _check(sys.executable, [{"name": "pytest", "version": "0.0.1", "imports": ["surely_absent_mod_x"],
                                        "import_own_name": True}])
    assert problems[0].startswith("pytest is ") and problems[0].endswith("expected 0.0.1")
    assert "import surely_absent_mod_x failed (ModuleNotFoundError" in problems[1]


def test_install_cell_is_standard_library_only():
    import ast

    import kagflow.wheels.offline_install as cell

    tree = ast.parse(Path(cell.__file__).read_text())
    modules = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
               for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
               for a in (n.names if isinstance(n, ast.Import) else [n])}
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}


def test_replacing_an_image_package_warns_about_the_image_packages_it_breaks(tmp_path, wheelhouse):
    image = TargetImage(name="probed", python_version="3.12", abis=("cp312", "abi3", "none"),
                        platforms=KAGGLE_PLATFORMS, installed={"beta": "1.0", "epsilon": "3.0", "zeta": "1.0"},
                        requires={"epsilon": ("beta<2",), "zeta": ("beta>=1",)})
    result = build(tmp_path, ["delta"], image, wheelhouse)
    breaks = [w for w in result.warnings if "breaks" in w]
    assert len(breaks) == 1
    assert "beta 2.0" in breaks[0] and "epsilon==3.0" in breaks[0] and "beta<2" in breaks[0]


def test_dependencies_whose_markers_apply_only_on_the_target_are_shipped(tmp_path, wheelhouse):
    # pip evaluates markers for the interpreter running it (3.11 here), not for the 3.12 target
    result = build(tmp_path, ["mu"], py312_image(), wheelhouse)
    shipped = {w.name: w for w in result.wheels}
    assert shipped["beta"].version == "2.0" and shipped["beta"].why == "dependency of mu"
    assert not shipped["beta"].requested
    assert manifest(result)["added_for_target_markers"] == (["beta>=2"] if sys.version_info < (3, 12) else [])


def test_the_offline_check_ignores_pip_configuration(tmp_path, wheelhouse, monkeypatch):
    # a machine-wide find-links (pip.conf or PIP_FIND_LINKS) with a better-tagged copy of the image's beta
    elsewhere = tmp_path / "elsewhere"
    write_wheel(elsewhere, "beta", "1.0", tag="py3-none-manylinux_2_17_x86_64", files=module("beta", "1.0"))
    monkeypatch.setenv("PIP_FIND_LINKS", str(elsewhere))
    result = build(tmp_path, ["alpha"], current_image("this-machine", installed={"beta": "1.0"}), wheelhouse)
    assert [w.name for w in result.wheels] == ["alpha"] and result.from_image == ("beta==1.0",)


def test_the_classifier_wheel_is_versioned_by_its_sources_and_imports(tmp_path):
    from kagflow.wheels.classifier import build_classifier_wheel, classifier_sources
    from kagflow.wheels.wheelfile import top_level_names

    wheel, pin = build_classifier_wheel(tmp_path / "c")
    again, pin_again = build_classifier_wheel(tmp_path / "c")
    assert pin == pin_again and again.read_bytes() == wheel.read_bytes()  # reproducible: no needless push
    assert pin.startswith("kagflow-classifier==0.") and "+src" in pin
    assert top_level_names(wheel) == ["kagflow_classifier"]
    python = fresh_venv(tmp_path / "venv")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    code = "import kagflow_classifier.paths as p, sys; print(p.input_root())"
    assert subprocess.run([str(python), "-c", code], capture_output=True, text=True).stdout.strip() == "/kaggle/input"
    assert len(classifier_sources()) >= 10


def test_the_dataset_carries_its_installer_and_check_notices_a_changed_one(tmp_path, wheelhouse):
    import kagflow
    from kagflow.wheels.build import INSTALLER_NAME

    result = build(tmp_path, ["alpha"], this_machine(), wheelhouse)
    installer = result.out_dir / INSTALLER_NAME
    assert installer.read_text() == (Path(kagflow.__file__).parent / "wheels" / "offline_install.py").read_text()
    assert check_dataset(result.out_dir) == []
    installer.write_text(installer.read_text() + "\n# edited\n")
    assert check_dataset(result.out_dir) == [f"{INSTALLER_NAME} does not match its sha256 in the manifest"]


def test_a_dataset_mounted_at_both_layouts_installs_once(tmp_path, wheelhouse, capsys):
    result = build(tmp_path, ["alpha"], this_machine(), wheelhouse)
    newer = tmp_path / "input" / "datasets" / OWNER / TITLE
    shutil.copytree(result.out_dir, newer)
    (tmp_path / "input" / TITLE).symlink_to(newer)  # the classic name, as the local Kaggle mounts it
    shutil.copytree(result.out_dir, tmp_path / "input" / "aaa-copy")  # or as a second real mount
    assert find_wheels_datasets(str(tmp_path / "input")) == [str(newer)]
    python = fresh_venv(tmp_path / "venv")
    installed = install_from_wheels_dataset(str(tmp_path / "input"), required=("alpha",), python=str(python))
    assert sorted(installed) == ["alpha==1.0", "beta==2.0"]
