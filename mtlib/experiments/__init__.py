"""The study's declared inputs: experiments rows, profiles and claims files, and the one resolver that turns
a row into a RunConfig (a row with ``init_from`` names its parent's run directory, so this sits above train)."""
