""".env.example documents every variable any service reads (issue 2)."""

import importlib
import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ["gateway", "auth", "vehicle", "location", "notification"]


def env_names(settings_class: type[BaseSettings]) -> set[str]:
    prefix = settings_class.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in settings_class.model_fields.items():
        alias = field.validation_alias
        names.add(alias if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_is_in_env_example(service):
    settings_class = importlib.import_module(f"fleet_{service}.config").Settings
    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    missing = sorted(env_names(settings_class) - documented)
    assert not missing, f"not in .env.example: {missing}"
