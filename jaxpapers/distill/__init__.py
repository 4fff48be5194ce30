"""Knowledge distillation: Hinton et al.'s soft targets with temperature (`hinton`) and Cho &
Hariharan's early-stopped teachers (`eskd`)."""
