"""Terminal rendering: the spinner and progress bar animate only on a terminal."""

from __future__ import annotations

import io

from wakeful_cli import render


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def test_table_pads_columns_and_shows_missing_values_as_dashes():
    text = render.table([("a", None), ("long name", 3)], header=("KEY", "VALUE"))
    assert text.splitlines() == [
        "KEY        VALUE", "---------  -----", "a          -", "long name  3",
    ]


def test_sizes_durations_and_moments():
    assert render.size(512) == "512 B"
    assert render.size(8192) == "8.0 KiB"
    assert render.size(3 * 1024 * 1024) == "3.0 MiB"
    assert render.duration(4.25) == "4.2s"
    assert render.duration(125) == "2m05s"
    assert render.duration(3 * 3600 + 60) == "3h01m"
    assert render.moment(0, 90) == "1970-01-01 00:00:00 UTC (1m30s ago)"
    assert render.expires_in(100, 70) == "in 30s"
    assert render.expires_in(100, 130) == "expired 30s ago"


def test_spinner_redraws_in_place_on_a_terminal():
    terminal = Terminal()
    spinner = render.Spinner(terminal, clock=Ticks())
    spinner.update("starting: task PROVISIONING")
    spinner.update("starting: task PROVISIONING")
    spinner.done()
    text = terminal.getvalue()
    assert text.count("\r\x1b[2K") == 3 and "\n" not in text
    assert f"{render.SPINNER_FRAMES[0]} starting: task PROVISIONING 0.5s" in text
    assert f"{render.SPINNER_FRAMES[1]} starting: task PROVISIONING 1.0s" in text


def test_spinner_writes_one_line_per_change_elsewhere():
    plain = io.StringIO()
    spinner = render.Spinner(plain, clock=Ticks())
    for message in ("starting: task PROVISIONING", "starting: task PROVISIONING",
                    "starting: task RUNNING"):
        spinner.update(message)
    spinner.done()
    assert plain.getvalue() == (
        "starting: task PROVISIONING (0.5s)\nstarting: task RUNNING (1.5s)\n"
    )


def test_progress_bar_on_a_terminal():
    terminal = Terminal()
    bar = render.ProgressBar(terminal, "download", 4096, clock=Ticks())
    bar(1024)
    bar(3072)
    bar.finish()
    text = terminal.getvalue()
    assert "download [#######-----------------------]  25.0% 1.0 KiB/4.0 KiB" in text
    assert text.endswith("download [##############################] 100.0% 4.0 KiB/4.0 KiB 1.5s\n")
