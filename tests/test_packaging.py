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
