"""What a run is, as data: the settings (one description each), their types and checks, the RunConfig they
make, and the YAML reader with located errors. Reads tasks, data, model and methods for the allowed values."""
