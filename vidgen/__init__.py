"""vidgen: command-line video generation with CogVideoX and Helios."""

__version__ = "0.1.0"
