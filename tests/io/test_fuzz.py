"""Fuzzing the DICOM reader: mutated real and synthetic series never crash, hang or silently mislead.

A seeded mutator (numpy's Generator; no hypothesis) takes small series -- 6 consecutive JPEG-Lossless
slices of COVID-CT-MD P002, 6 JPEG 2000 slices of the TotalSegmentator series, the two uncompressed
lungmask files, and synthetic series the project writes itself (uncompressed and RLE) -- and mutates
their headers (delete / zero / negative / NaN / huge / wrong VR / empty values of geometry, rescale,
image-size, UID and type tags), their pixel streams (truncate, flip bytes, splice or insert garbage,
zero, duplicate or swap slices' pixel data) and their files (truncate, empty, junk named .dcm,
duplicates). Every case is read by ``read_ct`` in a worker process (:mod:`fuzz_worker`) under a
per-case timeout, and must

* return a :class:`~m3lung.io.CTVolume` or raise an :class:`~m3lung.errors.M3LungError` (no other
  exception: no traceback), within :data:`CASE_TIMEOUT_S`;
* when it returns a volume, carry a warning the unmutated series does not have, or hold exactly the
  voxels of the unmutated series -- except for header mutations that describe another valid image
  (:data:`VALID_ALTERNATIVES`), where the values may change;
* for a sample of cases, ``m3lung info`` exits 0 or 2 with no traceback.

:data:`CI_CASES` seeds run by default (each test id names its seed, base series and mutations); the
slow run takes ``M3LUNG_FUZZ_CASES`` seeds (e.g. ``M3LUNG_FUZZ_CASES=5000 pytest -m slow
tests/io/test_fuzz.py``) and is skipped without it. A failing seed replays alone:
``pytest 'tests/io/test_fuzz.py::test_fuzz_reader[17-...]'`` or ``replay(17, folder)`` below.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from helpers import COVIDCTMD, COVIDCTMD_CASES, SHARED_DATA, make_volume, synthetic_chest

CI_CASES = 320
CASE_TIMEOUT_S = 30.0
CLI_EVERY = 8  # m3lung info runs on every 8th seed
_WORKER = Path(__file__).with_name("fuzz_worker.py")

# --------------------------------------------------------------------------------------------- bases
#: base series: name -> weight in the mix
BASES = {"ctmd": 0.35, "ts": 0.2, "lungmask": 0.1, "syn": 0.25, "syn_rle": 0.1}


def _copy_subset(src: Path, dst: Path, start: int, n: int) -> None:
    dst.mkdir(parents=True)
    files = sorted(f for f in src.iterdir() if f.is_file() and not f.name.startswith(("LICENSE", "SOURCE")))
    for f in files[start : start + n]:
        shutil.copyfile(f, dst / f.name)


def build_base(name: str, dst: Path) -> bool:
    """Write base series ``name`` into the new folder ``dst``; False when its real data is absent."""
    from m3lung.io import write_dicom_series

    if name == "ctmd":
        src = COVIDCTMD / COVIDCTMD_CASES["P002"][0]
        if not src.is_dir():
            return False
        _copy_subset(src, dst, 60, 6)
    elif name == "ts":
        src = SHARED_DATA / "dicom-variants" / "totalsegmentator" / "example_ct_dicom"
        if not src.is_dir():
            return False
        _copy_subset(src, dst, 7, 6)
    elif name == "lungmask":
        src = SHARED_DATA / "dicom-variants" / "lungmask"
        if not src.is_dir():
            return False
        dst.mkdir(parents=True)
        for f in ("0.dcm", "1.dcm"):
            shutil.copyfile(src / f, dst / f)
    else:
        vol = make_volume(synthetic_chest(n=8, size=64, seed=3))
        write_dicom_series(vol, dst, transfer_syntax="rle" if name == "syn_rle" else "explicit")
    return True


# --------------------------------------------------------------------------------------------- mutations
@dataclass(frozen=True)
class Mutation:
    name: str
    kind: str  # "header", "pixel" or "file"
    apply: Callable[[np.random.Generator, Path], str]  # returns a note on what it did


_HEADER_FIELDS = (
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "RescaleSlope",
    "RescaleIntercept",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "SOPClassUID",
    "Modality",
    "SeriesInstanceUID",
    "InstanceNumber",
    "SOPInstanceUID",
)
_HEADER_OPS = ("delete", "zero", "negative", "nan", "huge", "wrong_vr", "empty", "random")


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file())


def _pick(rng: np.random.Generator, folder: Path, *, all_prob: float = 0.4) -> list[Path]:
    files = _files(folder)
    if not files:
        return []
    if rng.random() < all_prob:
        return files
    k = int(rng.integers(1, max(2, len(files) // 2 + 1)))
    return [files[i] for i in sorted(rng.choice(len(files), size=min(k, len(files)), replace=False))]


def _load(f: Path) -> Any:
    return pydicom.dcmread(f, force=True)


def _save(ds: Any, f: Path) -> None:
    ds.save_as(f, enforce_file_format=False)


def _header_value(rng: np.random.Generator, ds: Any, kw: str, op: str) -> Any:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    vr = dictionary_VR(tag_for_keyword(kw))
    vm = len(ds[kw].value) if kw in ds and isinstance(ds[kw].value, list | pydicom.multival.MultiValue) else 1
    if kw == "ImageOrientationPatient" and op == "random":
        choice = int(rng.integers(4))
        if choice == 0:
            return ["1", "0", "0", "1", "0", "0"]  # degenerate: rows parallel to columns
        if choice == 1:
            return ["1", "0", "0", "0.5", "0.5", "0"]  # not orthogonal, not unit
        if choice == 2:
            return ["0", "0", "0", "0", "0", "0"]
        return [f"{v:.6f}" for v in rng.normal(size=6)]
    if kw == "SeriesInstanceUID" and op == "random":
        return "1.2.826.0.1.3680043.8.498." + str(int(rng.integers(1, 10**9)))
    if op == "empty":
        return None
    if vr in ("DS", "FD", "FL"):
        one = {"zero": "0", "negative": "-1.5", "nan": "NaN", "huge": "1e300"}.get(op)
        if one is None:
            one = f"{float(rng.choice([-1e6, -7, 0.001, 3.3, 512, 1e9])):g}"
        return [one] * vm if vm > 1 else one
    if vr in ("IS",):
        one = {"zero": "0", "negative": "-3", "nan": "NaN", "huge": "2147483647"}.get(op)
        return one if one is not None else str(int(rng.integers(-(2**31), 2**31)))
    if vr in ("US", "SS", "UL"):
        one = {"zero": 0, "negative": 65535, "nan": 1, "huge": 65535}.get(op)
        return one if one is not None else int(rng.choice([0, 1, 7, 8, 12, 15, 16, 17, 32, 64, 511, 513, 1024]))
    # UI, CS, SH, LO ...
    return {"zero": "0", "negative": "-1", "nan": "NaN", "huge": "9" * 64}.get(op, "X" * int(rng.integers(1, 20)))


def _set_raw(ds: Any, tag: int, vr: str, value: Any) -> None:
    """Store ``value`` under ``tag`` as raw bytes, bypassing pydicom's conversion (NaN in an IS, ...)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    if value is None:
        raw = b""
    elif isinstance(value, int) and vr in ("US", "SS", "UL"):
        raw = value.to_bytes(4 if vr == "UL" else 2, "little", signed=False)
    else:
        text = "\\".join(value) if isinstance(value, list) else str(value)
        raw = text.encode("ascii")
        if len(raw) % 2:
            raw += b"\0" if vr == "UI" else b" "
    t = Tag(tag)
    if t in ds:
        del ds[t]
    implicit, little = ds.original_encoding
    ds._dict[t] = RawDataElement(t, vr, len(raw), raw, 0, bool(implicit), bool(little))


def _mutate_header(rng: np.random.Generator, folder: Path) -> str:
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    kw = str(rng.choice(_HEADER_FIELDS))
    op = str(rng.choice(_HEADER_OPS))
    targets = _pick(rng, folder)
    for f in targets:
        try:
            ds = _load(f)
        except Exception:  # an earlier mutation broke the file: nothing to edit
            continue
        tag = tag_for_keyword(kw)
        if op == "delete":
            if kw in ds:
                del ds[kw]
        elif op == "wrong_vr":
            if kw in ds:
                del ds[kw]
            vr = "LO" if dictionary_VR(tag) != "LO" else "US"
            ds[tag] = DataElement(tag, vr, "junk\\1.5" if vr == "LO" else 7)
        else:
            _set_raw(ds, tag, dictionary_VR(tag), _header_value(rng, ds, kw, op))
        _save(ds, f)
    return f"{kw}:{op} in {len(targets)} file(s)"


def _mutate_transfer_syntax(rng: np.random.Generator, folder: Path) -> str:
    choices = [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.1.99",
        "1.2.3.4",
        "",
    ]
    ts = str(rng.choice(choices))
    targets = _pick(rng, folder)
    for f in targets:
        try:
            ds = _load(f)
        except Exception:
            continue
        if ts:
            ds.file_meta.TransferSyntaxUID = ts
        elif "TransferSyntaxUID" in ds.file_meta:
            del ds.file_meta.TransferSyntaxUID
        # write the data set as it was encoded; only the meta header lies
        ds.save_as(
            f, enforce_file_format=False, implicit_vr=ds.original_encoding[0], little_endian=ds.original_encoding[1]
        )
    return f"TransferSyntaxUID={ts or '<deleted>'} in {len(targets)} file(s)"


def _mix_series(rng: np.random.Generator, folder: Path) -> str:
    uid = "1.2.826.0.1.3680043.8.498." + str(int(rng.integers(1, 10**9)))
    targets = _pick(rng, folder, all_prob=0.0)
    for f in targets:
        try:
            ds = _load(f)
        except Exception:
            continue
        ds.SeriesInstanceUID = uid
        _save(ds, f)
    return f"SeriesInstanceUID mixed: {len(targets)} file(s) moved to another series"


def _pixel_span(data: bytes) -> tuple[int, int, bool]:
    """(start, end, encapsulated) of the pixel stream inside a file's bytes; (-1, -1, False) when none."""
    i = data.rfind(b"\xe0\x7f\x10\x00")
    if i < 0:
        return -1, -1, False
    explicit = data[i + 4 : i + 6] in (b"OB", b"OW")
    start = i + (12 if explicit else 8)
    length = int.from_bytes(data[start - 4 : start], "little")
    encaps = length == 0xFFFFFFFF
    if not encaps:
        return start, min(len(data), start + length), False
    # skip the basic offset table item and the first fragment's item header, then the codec header
    p = start
    if data[p : p + 4] == b"\xfe\xff\x00\xe0":
        p += 8 + int.from_bytes(data[p + 4 : p + 8], "little")
    p += 8
    for marker, skip in ((b"\xff\xda", 14), (b"\xff\x93", 2)):
        j = data.find(marker, p, p + 4096)
        if j >= 0:
            p = j + skip
            break
    else:
        p += 64  # RLE header
    end = len(data) - 8  # the sequence delimiter
    return min(p, end), end, True


def _mutate_stream(rng: np.random.Generator, folder: Path) -> str:
    op = str(rng.choice(["truncate", "flip", "splice", "insert", "zero"]))
    targets = _pick(rng, folder, all_prob=0.1)
    notes = []
    for f in targets:
        data = bytearray(f.read_bytes())
        start, end, _encaps = _pixel_span(bytes(data))
        if start < 0 or end - start < 4:
            continue
        if rng.random() < 0.2:  # anywhere in the element, item tags included
            start = max(0, start - 16)
        n = end - start
        if op == "truncate":
            cut = start + int(rng.integers(0, n))
            data = data[:cut]
            notes.append(f"cut at {cut - start}/{n}")
        elif op == "flip":
            k = int(rng.integers(1, 64))
            pos = start + rng.integers(0, n, size=k)
            for q in pos:
                data[int(q)] ^= int(rng.integers(1, 256))
            notes.append(f"{k} byte(s) flipped")
        elif op == "splice":
            k = int(min(n, rng.choice([8, 64, 500, 2000, 10000])))
            at = start + int(rng.integers(0, n - k + 1))
            data[at : at + k] = rng.integers(0, 256, size=k, dtype=np.uint8).tobytes()
            notes.append(f"{k} garbage byte(s) at {at - start}")
        elif op == "insert":
            k = int(rng.choice([1, 2, 16, 300]))
            at = start + int(rng.integers(0, n))
            data[at:at] = rng.integers(0, 256, size=k, dtype=np.uint8).tobytes()
            notes.append(f"{k} byte(s) inserted at {at - start}")
        else:
            data[start:end] = bytes(n)
            notes.append("zeroed")
        f.write_bytes(bytes(data))
    return f"stream {op} in {len(notes)} file(s) ({'; '.join(notes[:3])})"


def _copy_pixels(rng: np.random.Generator, folder: Path, *, swap: bool) -> str:
    files = _files(folder)
    if len(files) < 2:
        return "too few files"
    a, b = (files[int(i)] for i in rng.choice(len(files), size=2, replace=False))
    try:
        da, db = _load(a), _load(b)
        pa, pb = da.PixelData, db.PixelData
    except Exception:
        return "unreadable"
    db.PixelData = pa
    _save(db, b)
    if swap:
        da.PixelData = pb
        _save(da, a)
    return f"{'swapped' if swap else 'copied'} pixel data {a.name} -> {b.name}"


def _mutate_file(rng: np.random.Generator, folder: Path) -> str:
    op = str(rng.choice(["truncate", "empty", "junk", "junk_dicm", "duplicate", "replace_junk"]))
    files = _files(folder)
    f = files[int(rng.integers(len(files)))] if files else None
    if op == "junk" or op == "junk_dicm" or f is None:
        junk = rng.integers(0, 256, size=int(rng.integers(0, 4000)), dtype=np.uint8).tobytes()
        if op == "junk_dicm":
            junk = bytes(128) + b"DICM" + junk
        (folder / f"junk{int(rng.integers(1000))}.dcm").write_bytes(junk)
        return f"{op} file added"
    if op == "truncate":
        size = f.stat().st_size
        cut = int(rng.integers(0, size))
        with f.open("r+b") as fh:
            fh.truncate(cut)
        return f"{f.name} truncated to {cut}/{size}"
    if op == "empty":
        f.write_bytes(b"")
        return f"{f.name} emptied"
    if op == "duplicate":
        shutil.copyfile(f, folder / f"copy_of_{f.name}")
        return f"{f.name} duplicated"
    f.write_bytes(rng.integers(0, 256, size=f.stat().st_size, dtype=np.uint8).tobytes())
    return f"{f.name} replaced by junk"


MUTATIONS: dict[str, Mutation] = {
    m.name: m
    for m in (
        Mutation("header", "header", _mutate_header),
        Mutation("transfer_syntax", "header", _mutate_transfer_syntax),
        Mutation("mix_series", "header", _mix_series),
        Mutation("stream", "pixel", _mutate_stream),
        Mutation("dup_pixels", "pixel", lambda rng, d: _copy_pixels(rng, d, swap=False)),
        Mutation("swap_pixels", "pixel", lambda rng, d: _copy_pixels(rng, d, swap=True)),
        Mutation("file", "file", _mutate_file),
    )
}
_MUT_WEIGHTS = {
    "header": 0.38,
    "transfer_syntax": 0.05,
    "mix_series": 0.04,
    "stream": 0.3,
    "dup_pixels": 0.06,
    "swap_pixels": 0.06,
    "file": 0.11,
}


def plan(seed: int) -> tuple[str, list[str]]:
    """The base series and the mutations of case ``seed`` (known without any data, for test ids)."""
    rng = np.random.default_rng([seed, 0])
    base = str(rng.choice(list(BASES), p=list(BASES.values())))
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    names = list(_MUT_WEIGHTS)
    muts = [str(m) for m in rng.choice(names, size=n, p=list(_MUT_WEIGHTS.values()))]
    return base, muts


def make_case(seed: int, bases: Path, folder: Path) -> tuple[str, list[str], list[str]]:
    """Copy the base series of ``seed`` into ``folder`` and mutate it. Returns base, mutations, notes."""
    base, muts = plan(seed)
    shutil.copytree(bases / base, folder)
    rng = np.random.default_rng([seed, 1])
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in muts:
            try:
                notes.append(MUTATIONS[m].apply(rng, folder))
            except Exception as exc:  # pydicom refused to write the value: the files stay as they were
                notes.append(f"{m} not written ({type(exc).__name__})")
    return base, muts, notes


#: header mutations whose result may describe another valid image (values legitimately differ)
VALID_ALTERNATIVES: tuple[str, ...] = ()

#: open findings: silent changes that the reader does not detect yet. A case whose voxel-changing
#: mutations all lie here, and that changes voxels without a warning, is an expected failure (xfail,
#: listed in the summary with this reason) rather than a failure; anything else fails.
KNOWN_LIMITS = {
    "stream": "corrupt pixel stream read without a warning: the decoder accepts it (JPEG Lossless, JPEG 2000, "
    "RLE and uncompressed data carry no checksum) and the per-slice HU-range and neighbour checks miss the "
    "damage (in-range values, a few rows, or a shifted image)",
    "swap_pixels": "two slices' pixel data swapped: each is a real image of the series; the neighbour check "
    "catches only swaps of distant slices",
}


# --------------------------------------------------------------------------------------------- worker
class Worker:
    """One ``fuzz_worker.py`` process; restarted after a case times out or kills it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = b""

    def _start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2] / "src")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
        self.buf = b""
        with self.log.open("ab") as err:
            return subprocess.Popen(
                [sys.executable, str(_WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env
            )

    def run(self, case: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write((json.dumps(case) + "\n").encode())
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                while b"\n" in self.buf:
                    line, self.buf = self.buf.split(b"\n", 1)
                    if line.startswith(b"@@RESULT "):
                        return dict(json.loads(line[9:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close()
                    return {"outcome": "hang", "message": f"no answer within {timeout:g} s"}
                if not sel.select(left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    rc = proc.wait()
                    self.proc = None
                    return {"outcome": "died", "message": f"worker exited with status {rc} (see {self.log})"}
                self.buf += chunk

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


# --------------------------------------------------------------------------------------------- checks
def known_limit(result: dict[str, Any], muts: list[str], baseline_warnings: int) -> str | None:
    """The :data:`KNOWN_LIMITS` reason when the case's only problem is a silent change they explain."""
    pixel = [m for m in muts if MUTATIONS[m].kind == "pixel"]
    if result["outcome"] != "volume" or not pixel or not all(m in KNOWN_LIMITS for m in pixel):
        return None
    if result["changed_slices"] < 0:  # a slice lost or added: no pixel mutation does that
        return None
    if len(result["warnings"]) > baseline_warnings or result["equal"]:
        return None
    return "; ".join(dict.fromkeys(KNOWN_LIMITS[m] for m in pixel))


def problems(result: dict[str, Any], muts: list[str], baseline_warnings: int) -> list[str]:
    """What is wrong with one case's result (empty when it passes)."""
    out = []
    outcome = result["outcome"]
    if outcome in ("crash", "hang", "died"):
        out.append(f"{outcome}: {result.get('type', '')}: {result.get('message', '')}\n{result.get('traceback', '')}")
    elif outcome == "volume":
        warned = len(result["warnings"]) > baseline_warnings
        may_differ = any(m in VALID_ALTERNATIVES for m in muts)
        if not warned and not result["equal"] and not may_differ:
            out.append(
                f"silent wrong answer: a volume {result['shape']} without any new warning whose voxels differ "
                f"from the unmutated series ({result['changed_slices']} slice(s) changed, up to "
                f"{100 * result['changed_max_fraction']:.1f} % of a slice)"
            )
    if "cli_rc" in result and (result["cli_rc"] not in (0, 2) or "Traceback" in result["cli_stderr"]):
        out.append(f"m3lung info: exit {result['cli_rc']}, stderr:\n{result['cli_stderr']}")
    return out


@dataclass
class Fuzz:
    bases: Path
    cases: Path
    baselines: dict[str, tuple[str, int]]  # base -> (npy path, number of warnings)
    worker: Worker

    def check(self, seed: int, *, cli: bool | None = None) -> tuple[str, list[str], str | None]:
        """Run case ``seed``: its description, its problems, and the known limit that explains them."""
        base, muts = plan(seed)
        if base not in self.baselines:
            return f"seed {seed}: base series {base!r} not available under {SHARED_DATA} -> skipped", [], None
        folder = self.cases / f"seed{seed}"
        _, _, notes = make_case(seed, self.bases, folder)
        npy, n_warn = self.baselines[base]
        use_cli = cli if cli is not None else seed % CLI_EVERY == 0
        result = self.worker.run({"path": str(folder), "baseline": npy, "cli": use_cli}, CASE_TIMEOUT_S)
        found = problems(result, muts, n_warn)
        limit = known_limit(result, muts, n_warn)
        if limit is not None and result.get("cli_rc", 0) in (0, 2):
            found = [f for f in found if not f.startswith("silent wrong answer")]
        desc = f"seed {seed}: {base} + {', '.join(notes)} -> {result['outcome']}"
        if result["outcome"] == "error":
            desc += f" ({result['type']}: {result['message'][:200]})"
        if found:
            return desc, found, None  # keep the folder for a look
        shutil.rmtree(folder, ignore_errors=True)
        return desc, [], limit


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    from m3lung.io import read_ct

    root = tmp_path_factory.mktemp("fuzz")
    bases = root / "bases"
    baselines: dict[str, tuple[str, int]] = {}
    for name in BASES:
        if not build_base(name, bases / name):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = read_ct(bases / name)
        npy = root / f"{name}.npy"
        np.save(npy, vol.voxels)
        baselines[name] = (str(npy), len(vol.warnings))
    worker = Worker(root / "worker.log")
    yield Fuzz(bases, root / "cases", baselines, worker)
    worker.close()


def _id(seed: int) -> str:
    base, muts = plan(seed)
    return f"{seed}-{base}-{'+'.join(muts)}"


@pytest.mark.parametrize("seed", range(CI_CASES), ids=_id)
def test_fuzz_reader(fuzz: Fuzz, seed: int) -> None:
    desc, found, limit = fuzz.check(seed)
    if desc.endswith("-> skipped"):
        pytest.skip(desc)
    assert not found, desc + "\n" + "\n".join(found)
    if limit is not None:
        pytest.xfail(f"known limit: {limit} ({desc})")


@pytest.mark.slow
def test_fuzz_reader_many(fuzz: Fuzz) -> None:
    raw = os.environ.get("M3LUNG_FUZZ_CASES", "")
    if not raw.strip().isdigit():
        pytest.skip("set M3LUNG_FUZZ_CASES=N (e.g. 5000) to run N more fuzz cases")
    n = int(raw)
    first = int(os.environ.get("M3LUNG_FUZZ_FIRST_SEED", str(CI_CASES)))
    failures = []
    outcomes: dict[str, int] = {}
    for seed in range(first, first + n):
        desc, found, limit = fuzz.check(seed)
        outcome = "known limit" if limit else desc.rsplit("-> ", 1)[1].split(" ", 1)[0]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if found:
            failures.append(desc + "\n" + "\n".join(found))
    print(f"fuzz: {n} cases from seed {first}: {outcomes}; {len(failures)} failure(s)")
    assert not failures, f"{len(failures)} of {n} cases failed:\n\n" + "\n\n".join(failures[:20])
