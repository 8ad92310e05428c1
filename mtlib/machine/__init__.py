"""The machine a run trains on: device, precision (measured, never by brand), CPU capability, backend options."""
