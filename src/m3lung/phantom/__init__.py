"""Synthetic chest-CT cohorts with known truth, for tests, benchmarks, CPU training and the demo.

A study is one patient's chest CT in the canonical orientation (:mod:`m3lung.io.volume`), in integer
HU, with realistic anatomy (body wall, scanner table, spine, ribs, sternum, heart, aorta, trachea and
bronchi, branching vessels, lungs with lobes, diaphragm, liver, stomach, spleen), the lesions of its
class (0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP), and the truth: lung and lesion masks, per-slice lesion
labels and a description of every lesion and artefact. Everything is drawn from
``np.random.default_rng`` seeded by ``(seed, patient index)``; the same seed and config always give
identical arrays.

>>> from m3lung.phantom import PhantomConfig, make_study
>>> study = make_study(1, seed=0, config=PhantomConfig.small())  # doctest: +SKIP
>>> study.volume.shape, study.slice_labels.sum()  # doctest: +SKIP
"""

from __future__ import annotations

from m3lung.phantom.anatomy import LOBES
from m3lung.phantom.cohort import (
    MANIFEST_COLUMNS,
    cohort_patient_id,
    make_cohort,
    make_study,
    write_cohort,
    write_study,
)
from m3lung.phantom.config import (
    CLASS_NAMES,
    CLASS_TAGS,
    LESION_CODES,
    LESION_CONSOLIDATION,
    LESION_CRAZY_PAVING,
    LESION_GGO,
    LESION_NODULE,
    LESION_NONE,
    LUNG_LEFT,
    LUNG_RIGHT,
    PhantomConfig,
    PhantomStudy,
)

__all__ = [
    "CLASS_NAMES",
    "CLASS_TAGS",
    "LESION_CODES",
    "LESION_CONSOLIDATION",
    "LESION_CRAZY_PAVING",
    "LESION_GGO",
    "LESION_NODULE",
    "LESION_NONE",
    "LOBES",
    "LUNG_LEFT",
    "LUNG_RIGHT",
    "MANIFEST_COLUMNS",
    "PhantomConfig",
    "PhantomStudy",
    "cohort_patient_id",
    "make_cohort",
    "make_study",
    "write_cohort",
    "write_study",
]
