"""megasim: very large-scale multi-agent simulation with LLM-powered agents."""

__version__ = "0.1.0"
