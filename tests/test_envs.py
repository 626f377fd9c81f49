"""The conda environment file is rendered from constraints.txt and must match it exactly."""

import difflib
import importlib.util
import re

import pytest
import yaml
from conftest import REPO

ENV_FILE = REPO / "envs/vadbench.yaml"


def _render_module():
    spec = importlib.util.spec_from_file_location("vadbench_env_render", REPO / "envs/render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _render_module()


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_committed_conda_env_is_what_constraints_txt_renders():
    expected = render.render((REPO / "constraints.txt").read_text())
    committed = ENV_FILE.read_text()
    if committed != expected:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(True),
                expected.splitlines(True),
                "envs/vadbench.yaml (committed)",
                "envs/vadbench.yaml (rendered)",
            )
        )
        pytest.fail(
            f"envs/vadbench.yaml differs from what constraints.txt renders; regenerate it with "
            f"`{render.COMMAND}` and commit the result:\n{diff}"
        )


def test_conda_env_pins_every_package_of_the_venv_and_installs_vadbench():
    env = yaml.safe_load(ENV_FILE.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    assert env["dependencies"][:2] == ["python=3.11", "pip"]
    pip = env["dependencies"][2]["pip"]
    assert pip[-1] == "-e ../"
    pins = dict(line.split("==") for line in pip[:-1])
    assert pins == dict(line.split("==") for line in render.read_pins((REPO / "constraints.txt").read_text()))
    # every dependency pyproject.toml declares is pinned (opencv-python-headless came last)
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {_normalised(re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0]) for d in declared}
    assert names - {_normalised(n) for n in pins} == set()


def test_a_range_in_constraints_txt_is_refused_with_its_line_number():
    with pytest.raises(ValueError, match=r"line 2: 'numpy>=2' is not an exact pin"):
        render.render("# header\nnumpy>=2\n")
