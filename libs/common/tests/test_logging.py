"""Log formats: JSON lines by default, readable coloured console lines with LOG_FORMAT=console."""

import json
import subprocess
import sys

SCRIPT = """
import logging
from fleet_common.logging import configure_logging, get_logger
from fleet_common.settings import CommonSettings

settings = CommonSettings()
configure_logging("demo", settings.log_level, settings.log_format)
get_logger("demo.module").info("device connected", device_uid="abc-1")
logging.getLogger("uvicorn.error").warning("from the standard library")
try:
    raise ValueError("kaboom")
except ValueError:
    get_logger().exception("it failed")
"""


def run(env: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def test_the_default_format_is_one_json_object_per_event():
    lines = run({})
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events] == [
        "device connected",
        "from the standard library",
        "it failed",
    ]
    assert all(e["service"] == "demo" for e in events)
    assert events[0]["device_uid"] == "abc-1"
    assert "ValueError: kaboom" in events[2]["exception"]


def test_console_format_prints_readable_coloured_lines():
    lines = run({"LOG_FORMAT": "console"})
    first, second = lines[0], lines[1]
    for line in (first, second):
        assert not line.startswith("{")
        assert "\x1b[" in line  # ANSI colour
    assert "device connected" in first
    assert "device_uid" in first
    assert "abc-1" in first
    assert "demo" in first  # the service
    assert "from the standard library" in second
    assert any("ValueError: kaboom" in line for line in lines[2:])


def test_no_color_turns_colours_off():
    lines = run({"LOG_FORMAT": "console", "NO_COLOR": "1"})
    assert "device connected" in lines[0]
    assert "\x1b[" not in "".join(lines)


def test_an_unknown_format_is_refused():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "LOG_FORMAT" in result.stderr
