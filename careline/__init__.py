"""CareLine: shared settings, the command line and the process supervisor."""
