"""The main job: every FinDAP stage in order, in one run directory, with a report."""
