"""Executing runs: "train these runs, parents first" on this process, a pool of worker processes or Ray,
with progress, interrupts and the workbook's pre-run and papermill driver."""
