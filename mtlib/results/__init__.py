"""Reading finished run directories, never training: the results table and means, tables for the notebooks,
claim verdicts, method effects and every plot."""
