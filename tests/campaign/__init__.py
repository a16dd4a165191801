"""The reliability campaign of issue 10 (figures in docs/reliability.md)."""
