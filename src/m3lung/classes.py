"""The project's class names, in one place (SYSTEMS.md: 0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP).

A system that tells fewer classes apart (three, or two) names its own list in its
:class:`m3lung.systems.base.System`; indices then follow that list.
"""

from __future__ import annotations

#: Class names in index order: 0 Healthy, 1 COVID-19, 2 H1N1 (influenza / other viral), 3 CAP.
CLASSES: tuple[str, ...] = ("Healthy", "COVID-19", "H1N1", "CAP")
