"""Interviews and surveys of a run's agents, answered by each agent's own model."""
