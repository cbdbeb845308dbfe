"""Paper tables as config builders: one function per paper family returns the config of one table cell."""
