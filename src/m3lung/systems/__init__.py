"""Complete systems: the only place that wires whole pipelines together.

Importing the package registers its systems (:func:`m3lung.systems.base.list_systems`); each system
module keeps torch out of its import, so listing them stays fast.
"""

from m3lung.systems import m3lung_system  # noqa: F401  (registers M³Lung-Sys)
