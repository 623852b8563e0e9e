"""Where ``semilearn compare`` runs its ``semilearn train`` processes: here (a local pool,
:mod:`semi_usb.compare`) or as SLURM jobs (:mod:`semi_usb.launchers.slurm`)."""
