"""Pure logic of the plugin machinery, in-process: the start-up gate (is any plugin
declared?), the checks on what a post-run hook returns, and the one-line messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aido.plugins.calls import MAX_BYTES, MAX_FILES, BadReturn, _files
from aido.plugins.discover import declared
from aido.plugins.manager import one_line


def _dist(site: Path, name: str, entry_points: str | None) -> None:
    meta = site / f"{name}-1.0.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    if entry_points is not None:
        (meta / "entry_points.txt").write_text(entry_points)


def test_the_gate_sees_only_the_aido_plugins_group(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _dist(site, "other", "[console_scripts]\nx = y:z\n\n[aido.backends]\nfoo = a:B\n")
    _dist(site, "bare", None)
    (site / "broken.egg-info").write_text("a file, not a directory")
    assert not declared([str(site), str(tmp_path / "missing"), str(tmp_path / "site.zip")])
    _dist(site, "plugin", "[console_scripts]\nx = y:z\n\n[aido.plugins]\ncensus = aido_census\n")
    assert declared([str(tmp_path / "missing"), str(site)])


def test_a_mention_of_the_group_outside_a_section_header_is_not_a_plugin(tmp_path: Path) -> None:
    _dist(tmp_path, "tricky", "[console_scripts]\naido.plugins = y:z\n")
    assert not declared([str(tmp_path)])


@pytest.mark.parametrize(
    ("answer", "files"),
    [
        (None, ()),
        ({}, ()),
        ({"a.json": b"{}", "b.txt": "é"}, (("a.json", b"{}"), ("b.txt", "é".encode()))),
        ([("a", bytearray(b"x"))], (("a", b"x"),)),
        ((("..a", b""),), None),  # starts with '.'
    ],
)
def test_post_run_answers(answer: Any, files: Any) -> None:
    if files is None:
        with pytest.raises(BadReturn):
            _files(answer)
    else:
        assert _files(answer) == files


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (42, "returned int"),
        ("census.json", "returned str"),
        ([("a", b"x", "extra")], "where a (name, content) pair was due"),
        ({"../x": b""}, "not a plain file name"),
        ({"a/b": b""}, "not a plain file name"),
        ({"a\\b": b""}, "not a plain file name"),
        ({"..": b""}, "not a plain file name"),
        ({"": b""}, "not a plain file name"),
        ({".hidden": b""}, "starts with '.'"),
        ({"a\nb": b""}, "control characters"),
        ({"x" * 200: b""}, "too long"),
        ({3: b""}, "a file name is int"),
        ({"a": 3}, "content is int"),
        ([("a", b""), ("a", b"")], "given twice"),
        ({f"f{i}": b"" for i in range(MAX_FILES + 1)}, f"at most {MAX_FILES}"),
        ({"big": b"x" * (MAX_BYTES + 1)}, "MiB per run"),
    ],
)
def test_bad_post_run_answers_are_refused_whole(answer: Any, why: str) -> None:
    with pytest.raises(BadReturn) as caught:
        _files(answer)
    assert why in str(caught.value)


def test_messages_stay_on_one_line() -> None:
    assert one_line("a\nb\x1b[31mc\td") == "a b [31mc d"
    assert one_line("x" * 400, 10) == "x" * 9 + "…"


def _plugins(monkeypatch: pytest.MonkeyPatch, **hooks: Any) -> None:
    """Plugins (name -> aido_register_runtimes function) on a real pluggy manager, in-process."""
    import types

    import pluggy

    from aido.plugins import hookspecs, runtimes
    from aido.plugins.manager import Loaded, Plugin

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    plugins = []
    for name, function in sorted(hooks.items()):
        module = types.SimpleNamespace(aido_register_runtimes=hookspecs.hookimpl(function))
        pm.register(module, name=name)
        plugins.append(Plugin(name, name, None, None, ["aido_register_runtimes"]))
    monkeypatch.setattr(runtimes, "load", lambda: Loaded(plugins, pm))


def test_a_failing_runtime_hook_loses_only_its_own_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    from aido.plugins.runtimes import collect

    good = {"image": "debian:bookworm-slim", "interpreter": "bash", "extensions": [".bash"]}

    def raises() -> None:
        raise OSError("no config file")

    _plugins(
        monkeypatch,
        a_raises=raises,
        b_list=lambda: [("x", good)],
        c_many=lambda: {f"r{i}": good for i in range(33)},
        d_odd=lambda: {"odd": {"image": "a", "interpreter": "a", "extensions": [".a"], 1: 2}, "none": None},
        e_good=lambda: {"bash": good},
        f_none=lambda: None,
    )
    families, problems = collect()
    assert [(f.name, f.plugin) for f in families] == [("bash", "e_good")]
    assert problems == {
        "a_raises": ["aido_register_runtimes failed: OSError: no config file"],
        "b_list": ["aido_register_runtimes failed: BadReturn: it returned list, not {name: Runtime or dict}"],
        "c_many": ["aido_register_runtimes failed: BadReturn: 33 runtimes: at most 32 per plugin"],
        "d_odd": [
            "runtime 'odd': unknown key '1' (known: image, interpreter, extensions, default_version)",
            "runtime 'none': NoneType, not a Runtime or a dict",
        ],
    }
