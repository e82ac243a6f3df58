"""The per-font-file probe cache: same discovery as a fresh probe, re-probes a changed file, ignores bad entries."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from expforge.data import font_cache
from expforge.data.font_discovery import FontDiscovery, default_font_dirs, discover_fonts, probe_file
from expforge.data.fonts import generate_font_digits

WANTED = ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "LiberationMono-Italic.ttf", "FreeSans.ttf")
FOUND = {p.name: p for d in default_font_dirs() for p in sorted(d.rglob("*")) if p.name in WANTED}
FONTS = [FOUND[name] for name in WANTED if name in FOUND]
pytestmark = pytest.mark.skipif(len(FONTS) < 2, reason="needs at least two of the usual Debian fonts installed")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv(font_cache.CACHE_ENV, str(directory))
    return directory


def _as_data(discovery: FontDiscovery) -> tuple[object, ...]:
    faces = [
        (f.path, f.index, f.family, f.style, [(g.shape, g.tobytes()) for g in f.glyphs], f.features.tobytes())
        for f in discovery.faces
    ]
    return faces, [s.as_dict() for s in discovery.skipped], [s.as_dict() for s in discovery.duplicates]


def _entries(directory: Path) -> list[str]:
    return list(font_cache.open_cache(directory).entries)


def test_cached_discovery_equals_a_fresh_probe(cache_dir: Path, tmp_path: Path) -> None:
    digitless = tmp_path / "fonts" / "notafont.ttf"  # FreeType cannot open it: a skipped entry is cached too
    digitless.parent.mkdir()
    digitless.write_bytes(b"\0" * 64)
    sources = [*FONTS, digitless]
    fresh = discover_fonts(sources, cache=False)
    assert not cache_dir.exists()
    first = discover_fonts(sources)
    assert len(_entries(cache_dir)) == len(sources)
    assert len(list(cache_dir.iterdir())) == 1  # one cache file, however many fonts
    second = discover_fonts(sources)
    assert _as_data(first) == _as_data(fresh) == _as_data(second)
    assert any("FreeType" in s.reason for s in second.skipped)


def test_a_cached_result_is_what_the_probe_gave(cache_dir: Path) -> None:
    path = str(FONTS[0])
    probed = probe_file(path)
    key = font_cache.file_key(path)
    assert key is not None
    store = font_cache.open_cache(cache_dir)
    store.put(key, path, probed)
    store.save()
    loaded = font_cache.open_cache(cache_dir).get(key, path)
    assert loaded is not None and len(loaded) == len(probed) == 1
    face, again = probed[0], loaded[0]
    assert again == face  # path, index, family and style
    assert all(np.array_equal(a, b) for a, b in zip(face.glyphs, again.glyphs, strict=True))  # type: ignore[union-attr]
    assert np.array_equal(face.features, again.features)  # type: ignore[union-attr]


def test_a_changed_font_file_is_probed_again(cache_dir: Path, tmp_path: Path) -> None:
    font = tmp_path / "fonts" / "face.ttf"
    font.parent.mkdir()
    font.write_bytes(FONTS[0].read_bytes())
    before = discover_fonts([font]).faces[0]
    font.write_bytes(FONTS[1].read_bytes())  # another face under the same name
    after = discover_fonts([font]).faces[0]
    assert (after.family, after.style) != (before.family, before.style)
    assert (after.family, after.style) == (lambda f: (f.family, f.style))(discover_fonts([FONTS[1]]).faces[0])
    assert len(_entries(cache_dir)) == 3


def test_a_damaged_cache_is_ignored_and_replaced(cache_dir: Path) -> None:
    fresh = discover_fonts(FONTS[:1], cache=False)
    discover_fonts(FONTS[:1])
    (entry,) = cache_dir.iterdir()
    whole = entry.read_bytes()
    for damage in (b"", b"expforge-font-probes 1\n[[", whole[:-7], whole + b"x"):
        entry.write_bytes(damage)
        assert not _entries(cache_dir)
        assert _as_data(discover_fonts(FONTS[:1])) == _as_data(fresh)
        assert len(_entries(cache_dir)) == 1


def test_off_writes_no_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(font_cache.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(font_cache.CACHE_DIR_ENV, str(tmp_path / "expforge-cache"))
    assert font_cache.default_cache_dir() is None
    discover_fonts(FONTS[:1])
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "expforge-cache").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write a read-only directory")
def test_an_unwritable_cache_is_skipped(cache_dir: Path) -> None:
    cache_dir.mkdir(mode=0o500)
    assert discover_fonts(FONTS[:1]).faces
    assert not list(cache_dir.iterdir())


def test_warm_cache_gives_the_same_dataset_bytes(cache_dir: Path, tmp_path: Path) -> None:
    def dataset(name: str) -> dict[str, bytes]:
        out = tmp_path / name
        generate_font_digits(60, out, fonts=FONTS, seed=5, workers=2)
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}

    cold = dataset("cold")
    assert _entries(cache_dir)
    assert dataset("warm") == cold
