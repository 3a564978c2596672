"""geochat: a grounded vision-language assistant for remote-sensing imagery."""

__version__ = "0.1.0"
