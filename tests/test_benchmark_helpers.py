"""The benchmarks' shared helpers (benchmarks/ is not a package: imported by path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def markdown(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import _markdown

    monkeypatch.setattr(_markdown, "BENCHMARKS", tmp_path / "BENCHMARKS.md")
    yield _markdown
    sys.modules.pop("_markdown", None)


def test_sections_of_one_benchmark_on_two_devices_share_their_heading(markdown):
    markdown.write_section("b:cpu-avx512", ["FIRST"], "Bench (issue 3)")
    markdown.write_section("other", ["OTHERBODY"], "Other")
    markdown.write_section("b:cpu-avx2", ["SECOND"], "Bench (issue 3)")
    markdown.write_section("b:cpu-avx512", ["THIRD"], "Bench (issue 3)")
    text = markdown.BENCHMARKS.read_text()
    assert text.count("## Bench (issue 3)") == 1
    parts = [text.index(s) for s in ("## Bench", "THIRD", "SECOND", "## Other", "OTHERBODY")]
    assert parts == sorted(parts), text
    assert "FIRST" not in text


def test_cpu_sections_are_keyed_by_instruction_set(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    torch = pytest.importorskip("torch")
    import _torchbench

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert _torchbench.section_key("bench_x", torch.device("cpu")) == "bench_x:cpu-avx512"
    assert _torchbench.device_name(torch.device("cpu")).endswith(", AVX512")
    assert _torchbench.section_key("bench_x", torch.device("cuda")) == "bench_x:cuda"


def test_timing_warms_up_before_it_measures(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    torch = pytest.importorskip("torch")
    import _torchbench

    calls = []
    _torchbench.median_seconds(lambda: calls.append(1), 3, torch.device("cpu"), warm_s=0.0)
    assert len(calls) == 2 + 3  # two warm-up calls at least, then the timed ones
    calls.clear()
    _torchbench.median_seconds(lambda: calls.append(1), 3, torch.device("cpu"), warm_s=60.0)
    assert len(calls) == 10 + 3  # at most ten warm-up calls, however long the warm-up was meant to be


def test_paired_speedup_alternates_the_order_and_reports_baseline_over_other(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    torch = pytest.importorskip("torch")
    import _torchbench

    order: list[str] = []
    ticks = {"base": 3, "other": 1}
    now = [0.0]  # a fake clock: the baseline "takes" 3 ticks, the other 1

    def timed(name):
        def fn():
            order.append(name)
            now[0] += ticks[name]

        return fn

    monkeypatch.setattr(_torchbench.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(_torchbench, "median_seconds", lambda fn, repeat, device: 0.0)  # no warm-up here
    r = _torchbench.paired_speedup(timed("base"), timed("other"), 4, torch.device("cpu"))
    assert r == pytest.approx(3.0)
    assert order == ["base", "other", "other", "base", "base", "other", "other", "base"]


def test_device_sections_land_under_the_benchmarks_heading(markdown, monkeypatch):
    torch = pytest.importorskip("torch")
    import _torchbench

    monkeypatch.setattr(_torchbench, "write_section", markdown.write_section)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    _torchbench.write_device_section("bench_x", torch.device("cpu"), ["ROW"], "Slice network")
    text = markdown.BENCHMARKS.read_text()
    assert "## Slice network on CPU (issue 3)\n\n<!-- bench_x:cpu-avx2:start -->\nROW\n" in text
