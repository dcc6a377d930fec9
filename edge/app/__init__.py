"""The running sensor: a daemon life cycle around one pipeline, a reporter and a command table."""
