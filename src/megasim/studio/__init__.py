"""megasim studio: a web monitor and manager for runs, read from their run directories."""
