"""Complete systems: the only place that wires whole pipelines together."""
