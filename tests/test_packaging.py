"""setup.cfg lists packages explicitly (the integrations live outside espnet_kalle/): keep it complete."""

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def declared():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    packages = [p.strip() for p in config["options"]["packages"].split("\n") if p.strip()]
    dirs = dict(
        (name.strip(), path.strip())
        for name, path in (line.split("=") for line in config["options"]["package_dir"].split("\n") if "=" in line)
    )
    return packages, dirs


def test_every_package_directory_is_declared():
    packages, dirs = declared()
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "espnet_kalle").rglob("__init__.py")}
    for name, path in dirs.items():
        found |= {".".join((name,) + p.parent.relative_to(ROOT / path).parts)
                  for p in (ROOT / path).rglob("__init__.py")}
    assert found == set(packages), (sorted(found - set(packages)), sorted(set(packages) - found))


def test_integrations_import_under_their_own_names():
    import pipecat_kalle
    import wyoming_kalle

    assert Path(pipecat_kalle.__file__).parent == ROOT / "integrations" / "pipecat_kalle"
    assert Path(wyoming_kalle.__file__).parent == ROOT / "integrations" / "wyoming_kalle"


def extras():
    from packaging.requirements import Requirement

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    section = config["options.extras_require"]
    return {name: [Requirement(line) for line in section[name].split("\n") if line.strip()]
            for name in ("pipecat", "wyoming")}


def pins():
    lines = (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
    return dict(line.lower().split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


def test_integration_extras_are_ranges_that_hold_the_ci_pins():
    """Users pick any release of the framework's major version; CI still installs (and tests) the pinned one."""
    pinned = pins()
    for extra, requirements in extras().items():
        for requirement in requirements:
            operators = {spec.operator for spec in requirement.specifier}
            assert "==" not in operators and ">=" in operators, (extra, str(requirement))
            version = pinned[requirement.name.lower()]
            assert requirement.specifier.contains(version), (str(requirement), version)


def test_readmes_state_the_tested_versions():
    pinned = pins()
    readmes = {"pipecat-ai": "integrations/pipecat_kalle/README.md", "wyoming": "integrations/wyoming_kalle/README.md"}
    for package, readme in readmes.items():
        text = (ROOT / readme).read_text(encoding="utf-8")
        assert f"Tested with {package} {pinned[package]}" in text, (readme, pinned[package])
