"""The study's training methods, independent of any run: gradient methods (surgery, vaccine, compromise,
torchjd aggregators), loss weightings, SMART and the task samplers (PAL annealed sampling)."""
