"""Configuration: embedded default, overrides, and one-line errors with key paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from xvactor.config import ConfigError, DuplicatePolicy, Overrides, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_default() -> None:
    config = load_config()
    assert config.ae_title == "XVACTOR"
    assert [(listener.host, listener.port) for listener in config.listeners] == [("0.0.0.0", 11112)]
    assert config.data_dir == "./xvactor-data"
    assert config.max_pdu == 262144
    assert config.implementation_class_uid == "1.2.840.114384"
    assert config.duplicate_policy is DuplicatePolicy.KEEP_FIRST


def test_overrides_beat_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'ae_title = "FILEAE"\n[[listeners]]\nport = 104\n[[listeners]]\nport = 2762\n',
    )
    config = load_config(path, Overrides(port=4242, ae_title="FLAGAE", data_dir="/d"))
    assert config.ae_title == "FLAGAE"
    assert config.data_dir == "/d"
    assert [listener.port for listener in config.listeners] == [4242, 2762]


def test_full_example_configs_load() -> None:
    root = Path(__file__).parents[2] / "configs"
    for path in root.glob("*.toml"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[listeners]]\nprot = 104\n", "listeners[0].prot: unknown key"),
        ("bogus = 1\n", "bogus: unknown key"),
        ("[timeouts]\ndimse = -1\n", "timeouts.dimse: must be positive"),
        ("[timeouts]\ndimsee = 1\n", "timeouts.dimsee: unknown key"),
        ("ae_title = 5\n", "ae_title: Expected `str`, got `int`"),
        ('ae_title = "WAY_TOO_LONG_AE_TITLE"\n', "ae_title: 'WAY_TOO_LONG_AE_TITLE' is not"),
        ('duplicate_policy = "maybe"\n', "duplicate_policy: Invalid enum value 'maybe'"),
        ("[[listeners]]\nport = 70000\n", "listeners[0].port: 70000 is not a TCP port"),
        (
            '[[destinations]]\nname = "a"\nae_title = "A"\nhost = "h"\nport = 1\n'
            '[[destinations]]\nname = "a"\nae_title = "B"\nhost = "h"\nport = 2\n',
            "destinations[1].name: 'a' is used twice",
        ),
        ("[[destinations]]\nname = 'x'\n", "destinations[0]: Object missing required field"),
        ("ae_title = \n", "not valid TOML"),
    ],
)
def test_errors_are_one_line_with_the_key_path(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
