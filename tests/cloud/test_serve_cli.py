"""`umbra-cloud serve` given what it cannot use: one line naming it and exit 2, never a traceback."""

from __future__ import annotations

import socket

import pytest

from cloud.__main__ import main


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("umbra-cloud: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("mqtt, says", [("broker:x", "not a number"), ("broker:70000", "mqtt_port"),
                                        ("broker:0", "mqtt_port")])
def test_a_bad_mqtt_port_is_one_line(tmp_path, capsys, mqtt, says):
    assert says in refused(capsys, ["--dir", str(tmp_path / "c"), "--mqtt", mqtt])


@pytest.mark.parametrize("argv, says", [(["--port", "70000"], "port"), (["--daily-epsilon", "nan"], "daily_epsilon"),
                                        (["--daily-epsilon", "inf"], "daily_epsilon")])
def test_bad_values_are_one_line(tmp_path, capsys, argv, says):
    assert says in refused(capsys, ["--dir", str(tmp_path / "c"), *argv])


def test_a_data_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "c").write_text("not a folder")
    assert "cannot serve" in refused(capsys, ["--dir", str(tmp_path / "c"), "--port", "0", "--api-port", "0"])


def test_a_port_taken_is_one_line_and_nothing_is_lost(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        err = refused(capsys, ["--dir", str(tmp_path / "c"), "--port", str(port), "--api-port", "0"])
    assert "cannot serve" in err
    assert (tmp_path / "c" / "cloud.sqlite").exists()  # (the store it made is kept for the next start)


def test_a_database_that_does_not_answer_is_one_line(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = refused(capsys, ["--dir", str(tmp_path / "c"), "--port", "0", "--api-port", "0",
                           "--database", f"postgresql://umbra@127.0.0.1:{port}/cloud?connect_timeout=2"])
    assert "cannot serve" in err
