"""The compose stack and the Kubernetes manifests are what the service registry generates."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from glv_devtools.deploy_files import REGENERATE_COMMAND, ROOT, check, write
from glv_runtime.settings import ServiceSettings
from glv_schemas.topics import DEPLOYED_SERVICES


def test_deploy_files_are_current() -> None:
    problems = check(ROOT)
    assert not problems, (
        "deploy files are out of date:\n  " + "\n  ".join(problems) + f"\nregenerate them with `{REGENERATE_COMMAND}`"
    )


def test_check_reports_stale_extra_and_unregistered(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    for service in DEPLOYED_SERVICES:
        (tmp_path / "services" / service.name / service.package).mkdir(parents=True)
        (tmp_path / "services" / service.name / service.package / "__init__.py").touch()
        (tmp_path / "services" / service.name / "pyproject.toml").touch()
    assert check(tmp_path) == []

    (tmp_path / "deploy/k8s/configmap.yaml").write_text("edited by hand\n", encoding="utf-8")
    (tmp_path / "deploy/k8s/retired-deployment.yaml").touch()
    (tmp_path / "services/newcomer").mkdir()
    (tmp_path / "services/newcomer/pyproject.toml").touch()
    problems = check(tmp_path)
    assert "stale: deploy/k8s/configmap.yaml" in problems
    assert "extra: deploy/k8s/retired-deployment.yaml" in problems
    assert any(p.startswith("unregistered: services/newcomer/") for p in problems)

    assert write(tmp_path) == ["wrote: deploy/k8s/configmap.yaml", "removed: deploy/k8s/retired-deployment.yaml"]


def test_registry_ports_are_the_services_defaults() -> None:
    for service in DEPLOYED_SERVICES:
        module = importlib.import_module(f"{service.package}.settings")
        classes = [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, ServiceSettings) and value is not ServiceSettings
        ]
        assert [c.model_fields["http_port"].default for c in classes] == [service.http_port], service.name
