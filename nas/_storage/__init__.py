"""Storage and workers: journal file and RDB storage, the gate, the trial loop, recovery."""
