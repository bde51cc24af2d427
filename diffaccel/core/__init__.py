"""The hook core every strategy attaches through: one engine per denoiser module, one step clock,
one set of run statistics."""
